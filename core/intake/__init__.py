"""The SMTP intake: where internal servers hand mail to the gateway (aiosmtpd).

``server`` opens the listeners, ``handler`` decides each SMTP step (relay
control at RCPT, ``accept`` hooks and the durable commit at the end of DATA),
``auth`` checks relay logins, ``normalise`` makes line ends canonical and
``received`` writes the trace header.
"""

from .server import Intake

__all__ = ["Intake"]
