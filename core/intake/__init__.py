"""The SMTP intake: where internal servers hand mail to the gateway (aiosmtpd).

``server`` opens the listeners, ``protocol`` is aiosmtpd's SMTP protocol with the
gateway's changes (every override of aiosmtpd's private names is there), ``handler``
decides each SMTP step (relay control at RCPT, ``accept`` hooks and the durable commit
at the end of DATA), ``data`` reads DATA in chunks, ``auth`` checks relay logins,
``normalise`` makes line ends canonical and ``received`` writes the trace header.
``admit`` is the one path of a message into the queue (``accept`` hooks, trace header,
durable commit), shared by the SMTP handler and the POP3 collector (``core/collect``);
``services`` is what both get from the gateway.
"""

from .handler import IntakeServices
from .server import Intake

__all__ = ["Intake", "IntakeServices"]
