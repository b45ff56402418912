"""An ISP SMTP server that relays only for clients that logged into POP3 recently (POP-before-SMTP).

It is the RecordingSink (aiosmtpd) with a MAIL FROM check that reads the real
Dovecot's log, the way POP-before-SMTP daemons (DRAC, pop-before-smtp) work:
a client address with a successful POP3 login within ``window`` seconds may
send; anyone else gets ``530 5.7.0``. It records when each SMTP session
reached MAIL FROM, so a test can compare it with the POP3 login time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.peers.dovecot import DovecotPeer
from tests.peers.sink import RecordingSink, _Handler


class _PopGateHandler(_Handler):
    def __init__(self, sink: RecordingSink, dovecot: DovecotPeer, window: float) -> None:
        super().__init__(sink)
        self.dovecot = dovecot
        self.window = timedelta(seconds=window)
        self.mail_times: list[datetime] = []
        self.refused: list[str] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
        now = datetime.now()
        client = session.peer[0]
        recent = [x for x in self.dovecot.pop3_logins() if x.rip == client and now - x.timestamp <= self.window]
        if not recent:
            self.refused.append(address)
            return "530 5.7.0 POP-before-SMTP: log into your mailbox with POP3 first"
        self.mail_times.append(now)
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


class PopGateSink(RecordingSink):
    """A RecordingSink that demands a recent POP3 login (seen in ``dovecot``'s log) before MAIL."""

    def __init__(self, host: str, dovecot: DovecotPeer, *, window: float = 600.0) -> None:
        super().__init__(host)
        self.gate = _PopGateHandler(self, dovecot, window)
        self.controller.handler = self.gate
