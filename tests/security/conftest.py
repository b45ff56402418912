"""The intake and the console under attack (issue 14): gateways to attack, and small measuring helpers.

Every attack here is bounded in count and time and runs on loopback only. The tests print
their figures (``pytest -s`` or ``-rP`` shows them); docs/robustness.md has them before and
after the fixes.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailpipe.core.intake.auth import hash_password
from tests.console.conftest import PASSWORD as CONSOLE_PASSWORD
from tests.core.helpers import RawClient
from tests.peers.certs import TestPKI
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port
from tests.peers.tcp import read_until

RELAY_USER, RELAY_PASSWORD = "office", "s3cret-office-pw"
GatewayFactory = Callable[..., MailpipeProcess]

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# fail2ban's <HOST> tag (an IPv4 or IPv6 address, an IPv4-mapped prefix allowed), as fail2ban expands it.
HOST = r"(?:::f{4,6}:)?(?P<host>[0-9A-Fa-f.:]+)"
# fail2ban cuts the date out of the line before it applies failregex.
DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+")


@pytest.fixture(scope="session")
def relay_hash() -> str:
    return hash_password(RELAY_PASSWORD)


@pytest.fixture(scope="session")
def console_hash() -> str:
    """The argon2 hash of the console password of tests/console (user ``admin``)."""
    return hash_password(CONSOLE_PASSWORD)


@pytest.fixture
def intake_gateway(mailpipe_factory: Callable[..., MailpipeProcess], pki: TestPKI, relay_hash: str) -> GatewayFactory:
    """Start a gateway whose listener offers STARTTLS and AUTH for ``office``; ``intake``/``relay`` override.

    ``implicit_tls`` adds a second listener with TLS from the first byte.
    """

    def start(intake: dict[str, Any] | None = None, relay: dict[str, Any] | None = None, *,
              implicit_tls: bool = False, **config: Any) -> MailpipeProcess:
        tls = {"cert": str(pki.cert_file), "key": str(pki.key_file)}
        listen = [{"address": f"127.0.0.1:{free_port()}", "tls": "starttls", **tls}]
        if implicit_tls:  # a second listener, TLS from the first byte
            listen.append({"address": f"127.0.0.1:{free_port()}", "tls": "implicit", **tls})
        return mailpipe_factory({
            "hostname": "gw.test",
            "listen": listen,
            "relay": {"networks": ["127.0.0.1/32"],
                      "users": [{"username": RELAY_USER, "password_hash": relay_hash}], **(relay or {})},
            "intake": intake or {},
            **config,
        }).start()

    return start


def tls_client(gw: MailpipeProcess, pki: TestPKI, source: str | None = None) -> RawClient:
    """A raw client that said EHLO, STARTTLS, and EHLO again over TLS."""
    host, port = gw.address
    c = RawClient(host, port, source=source)
    assert c.greeting[0] == 220, c.greeting
    c.cmd("EHLO client.test")
    assert c.cmd("STARTTLS")[0] == 220
    c.sock = ssl.create_default_context(cafile=str(pki.ca_file)).wrap_socket(c.sock, server_hostname="127.0.0.1")
    c.buf = b""
    assert c.cmd("EHLO client.test")[0] == 250
    return c


def greeting(host: str, port: int, source: str | None = None, timeout: float = 5) -> bytes:
    """The first line a new connection gets (b"" when the server closes at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout,
                                      source_address=(source, 0) if source else None) as s:
            return read_until(s, b"\r\n")
    except OSError:
        return b""


def server_sockets(port: int, state: str) -> int:
    """How many TCP sockets with local port ``port`` are in ``state`` (``ss``; e.g. close-wait)."""
    out = subprocess.run(["ss", "-Htn", "state", state, f"( sport = :{port} )"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return len([line for line in out.splitlines() if line.strip()])


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``action`` took, and what it returned."""
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def fail2ban_regexes() -> list[re.Pattern[str]]:
    """The ``failregex`` lines of the mailpipe filter in docs/operations.md, with <HOST> expanded."""
    block = re.search(r"```ini\n(\[Definition\].*?)```", OPERATIONS.read_text(), re.S)
    assert block, "docs/operations.md has no fail2ban filter block"
    lines = block.group(1).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("failregex"))
    patterns = [lines[start].partition("=")[2].strip()]
    for line in lines[start + 1:]:  # continuation lines are indented
        if not line.startswith((" ", "\t")) or not line.strip():
            break
        patterns.append(line.strip())
    return [re.compile(p.replace("<HOST>", HOST)) for p in patterns]


def banned_hosts(log: str) -> list[str]:
    """The host fail2ban would count for each line of ``log`` that the filter matches."""
    hosts = []
    for line in log.splitlines():
        rest = DATE.sub("", line, count=1)
        for regex in fail2ban_regexes():
            if m := regex.search(rest):
                hosts.append(m.group("host"))
                break
    return hosts
