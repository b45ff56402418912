"""Messages and SMTP clients for the policy stage tests: attachments, EICAR, hostile MIME."""

from __future__ import annotations

import io
import smtplib
import threading
import time
import zipfile
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from tests.peers.clamd import EICAR

HOSTNAME = "gw.policy.test"


def mail(sender: str = "alice@corp.example", to: str = "bob@remote.example", subject: str = "Quarterly report",
         body: str = "Hello.", attachments: list[tuple[str, bytes, str]] | None = None,
         headers: dict[str, str] | None = None, html: bool = False) -> bytes:
    """A message with CRLF line ends; ``attachments`` are (file name, bytes, content type)."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, subject
    m["Message-ID"] = f"<{time.monotonic_ns()}@corp.example>"
    for name, value in (headers or {}).items():
        m[name] = value
    if html:
        m.set_content(f"<p>{body}</p>", subtype="html")
    else:
        m.set_content(body)
    for name, data, ctype in attachments or []:
        maintype, subtype = ctype.split("/")
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes(policy=SMTP)


def zipped(name: str, data: bytes) -> bytes:
    """``data`` as the only file ``name`` of a zip archive."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def zip_bomb(levels: int = 3, zeros: int = 64 << 20) -> bytes:
    """Nested zip archives around ``zeros`` bytes of zeros (small on the wire, huge unpacked)."""
    data = zipped("zeros.bin", b"\0" * zeros)
    for i in range(levels):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for j in range(8):
                z.writestr(f"layer{i}-{j}.zip", data)
        data = buf.getvalue()
    return data


def eicar_mail(**kw: Any) -> bytes:
    return mail(subject="invoice", attachments=[("invoice.com", EICAR, "application/octet-stream")], **kw)


def deep_mime(depth: int, inner: str = "x.exe") -> bytes:
    """``depth`` nested multipart/mixed parts around one attachment called ``inner``."""
    out = [b"From: mallory@evil.example\r\nTo: bob@remote.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"]
    for i in range(depth):
        out.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i))
    out.append(b'Content-Type: application/octet-stream; name="%s"\r\n\r\nAAAA\r\n' % inner.encode())
    for i in reversed(range(depth)):
        out.append(b"--b%d--\r\n" % i)
    return b"".join(out)


def send(port: int, data: bytes, sender: str = "alice@corp.example", to: list[str] | None = None,
         host: str = "127.0.0.1", timeout: float = 60.0) -> tuple[int, str]:
    """Hand ``data`` to the intake; the reply to the final dot as (code, text), refusals included."""
    to = to or ["bob@remote.example"]
    with smtplib.SMTP(host, port, timeout=timeout) as client:
        client.ehlo("client.corp.example")
        client.mail(sender)
        for r in to:
            code, text = client.rcpt(r)
            assert code == 250, (code, text)
        code, text = client.data(data)
        return code, text.decode()


def base_config(workdir: Path, port: int, chain: list[Any], **extra: Any) -> dict[str, Any]:
    """A whole configuration: intake on 127.0.0.1:``port``, a state folder in ``workdir``, ``chain``."""
    return {"hostname": HOSTNAME, "state_dir": str(workdir / "state"), "listen": [f"127.0.0.1:{port}"],
            "chain": chain, **extra}


def smarthost(sink_port: int, **options: Any) -> dict[str, Any]:
    """A smarthost chain entry delivering in clear to a recording sink on 127.0.0.1."""
    return {"smarthost": {"server": f"127.0.0.1:{sink_port}", "tls": "none", **options}}


class OtherClient(threading.Thread):
    """A second SMTP client, in a thread, that says EHLO and NOOP while the test's client waits for its reply.

    ``took`` is how long it waited: a policy stage busy with a hostile message must not hold it up.
    """

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.took: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as c:
            c.ehlo("other.corp.example")
            assert c.noop()[0] == 250
        self.took = time.monotonic() - started
