"""A ``pipeline serve`` with the console, metrics and retry, delivering to a recording sink."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailpipe.core.intake.auth import hash_password
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

USER, PASSWORD = "admin", "correct horse battery staple"
HOSTNAME = "gw.console.test"

CONFIG = """\
# mailpipe under test: the console's Outgoing Mail page edits this file.
hostname: {hostname}          # "Local host name"
state_dir: {state}
listen:
  - 127.0.0.1:{smtp}
delivery:
  send_immediately: true       # "Send any waiting messages immediately"
  timeout: 30s                 # "Timeout"
chain:
  # The ISP's mail server (the recording sink of the test).
  - smarthost:
      server: 127.0.0.1:{sink}  # "Server"
      tls: none
  - retry:                     # "failed delivery"
      every: {every}           # "Retry failed messages every"
      expire_after: 2d         # "Delete failed messages after"
  - console:
      listen: 127.0.0.1:{console}
      users:
        - username: {user}
          password_hash: "{hash}"
  - metrics:
      listen: 127.0.0.1:{metrics}
"""


@dataclass
class ConsoleSetup:
    """The running gateway, its sink and where its console and metrics answer."""

    mailpipe: MailpipeProcess
    sink: RecordingSink
    console_url: str
    metrics_url: str

    @property
    def smtp_port(self) -> int:
        return self.mailpipe.address[1]

    def send(self, to: list[str], subject: str = "Quarterly report", sender: str = "alice@origin.test") -> None:
        """Hand a message to the gateway's intake over SMTP."""
        body = (f"From: {sender}\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n\r\nHello.\r\n").encode()
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as client:
            client.sendmail(sender, to, body)


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def console_setup(workdir: Path, password_hash: str) -> Iterator[ConsoleSetup]:
    with RecordingSink() as sink:
        smtp, console, metrics = free_port(), free_port(), free_port()
        proc = MailpipeProcess(workdir / "mailpipe", {"listen": [f"127.0.0.1:{smtp}"]})
        proc.config_path.write_text(CONFIG.format(
            hostname=HOSTNAME, state=workdir / "mailpipe" / "state", smtp=smtp, sink=sink.port, every="15m",
            console=console, metrics=metrics, user=USER, hash=password_hash,
        ))
        proc.start()
        try:
            yield ConsoleSetup(proc, sink, f"http://127.0.0.1:{console}", f"http://127.0.0.1:{metrics}/metrics")
        finally:
            proc.stop()


def poll(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` until it returns something true (bounded); its value."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
