"""Helpers for the core tests: building messages and talking raw SMTP."""

from __future__ import annotations

import email.policy
import smtplib
import socket
from email.message import EmailMessage
from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_config(name: str) -> dict:
    """An example configuration as a dict (before ${ENV} substitution)."""
    return yaml.safe_load((EXAMPLES / name).read_text())


def make_message(subject: str = "test", body: str = "Hello.\n", sender: str = "alice@example.org",
                 to: str = "bob@example.net") -> bytes:
    """A small RFC 5322 message with CRLF line ends."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}@client.test>"
    msg.set_content(body)
    return msg.as_bytes()


def fill_queue(client: smtplib.SMTP, sender: str, recipient: str) -> tuple[list[str], list[tuple[int, bytes]]]:
    """Send 100 KB messages over ``client`` until three are refused (60 at most: twice a 3 MB disk).

    Returns the subjects of the messages accepted and the (code, text) of those refused.
    """
    accepted: list[str] = []
    refused: list[tuple[int, bytes]] = []
    body = "x" * 70 + "\n"
    for n in range(60):
        client.mail(sender)
        client.rcpt(recipient)
        code, text = client.data(make_message(f"fill {n}", body * 1400))
        if code == 250:
            accepted.append(f"fill {n}")
        else:
            refused.append((code, text))
            if len(refused) >= 3:
                break
    return accepted, refused


def split_received(data: bytes) -> tuple[bytes, bytes]:
    """Split the first header field (a folded Received:) from the rest of the message."""
    assert data.startswith(b"Received: "), data[:80]
    end = 0
    while True:
        end = data.index(b"\r\n", end) + 2
        if data[end:end + 1] not in (b" ", b"\t"):
            return data[:end], data[end:]


class RawClient:
    """A line-level SMTP client over a plain socket, for byte-exact and hostile input."""

    def __init__(self, host: str, port: int, *, source: str | None = None, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"connection closed; got {self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, line: bytes | str) -> tuple[int, str]:
        self.send(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        return self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()
