"""Fixtures for the collection tests: a real Dovecot POP3 server (the ISP's mailboxes), a recording sink
(the office's internal server), and configurations for ``pipeline serve`` / ``pipeline collect``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

INTERNAL = "corp.test"


def message(n: int, *, to: str = f"alice@{INTERNAL}", extra: str = "", body: str = "Hello.\r\n",
            sender: str = "carol@outside.test") -> bytes:
    """A small message as the ISP would have delivered it into the mailbox (with a Return-Path)."""
    return (f"Return-Path: <{sender}>\r\nReceived: from mx.outside.test by pop.isp.test; "
            f"Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: Carol <{sender}>\r\nTo: {to}\r\n{extra}"
            f"Subject: collected {n}\r\nMessage-ID: <collected-{n}.{time.monotonic_ns()}@outside.test>\r\n\r\n"
            f"{body}").encode()


def mailbox_files(dovecot: DovecotPeer, user: str) -> list[Path]:
    """The messages still in ``user``'s maildir (new and cur)."""
    root = dovecot.mail_dir / user
    return [p for sub in ("new", "cur") for p in (root / sub).glob("*")] if root.exists() else []


def account(dovecot: DovecotPeer, pki: TestPKI, user: str = "alice", *, tls: str = "implicit",
            **collect: Any) -> dict[str, Any]:
    """An ``accounts`` entry collecting ``user``'s Dovecot mailbox (by default into alice@corp.test)."""
    collect.setdefault("deliver_to", f"alice@{INTERNAL}")
    collect.setdefault("every", "1h")
    port = dovecot.pop3s_port if tls == "implicit" else dovecot.pop3_port
    return {"address": f"{user}@isp.test", "username": user, "password": f"{user}-secret",
            "pop3": {"server": dovecot.host, "port": port, "tls": tls, "ca_file": str(pki.ca_file)},
            "collect": collect}


def gateway_config(workdir: Path, internal_port: int, accounts: list[dict[str, Any]], *, retry: str = "1s",
                   **extra: Any) -> dict[str, Any]:
    """A gateway whose chain hands mail for corp.test to the internal server on ``internal_port``."""
    config: dict[str, Any] = {
        "hostname": "gw.corp.test",
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        "accounts": accounts,
        "chain": [
            {"smarthost": {"server": f"127.0.0.1:{internal_port}", "tls": "none", "domains": [INTERNAL]}},
            {"retry": {"every": retry, "expire_after": "1d"}},
        ],
    }
    config.update(extra)
    return config


def write(workdir: Path, config: dict[str, Any], name: str = "mailpipe.yaml") -> Path:
    import yaml

    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def collect_cli(config: Path, *args: str, check: bool = True) -> tuple[int, list[dict[str, Any]] | str]:
    """``pipeline collect ARGS --json -c CONFIG``: exit status and the reports (or the error text)."""
    res = run_pipeline(config, "collect", *args, "--json", check=check, timeout=120)
    try:
        return res.returncode, json.loads(res.stdout)
    except json.JSONDecodeError:
        return res.returncode, res.stdout + res.stderr


def events(config: Path, kind: str) -> list[dict[str, Any]]:
    """Stored events of ``kind`` (a prefix), oldest first."""
    res = run_pipeline(config, "events", "--kind", kind, "--json", "--limit", "10000")
    return json.loads(res.stdout)


@pytest.fixture
def internal() -> Iterator[RecordingSink]:
    """The office's internal mail server: a recording SMTP sink."""
    with RecordingSink("127.0.0.1") as sink:
        yield sink

