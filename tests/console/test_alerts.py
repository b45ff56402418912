"""Alerts: rules in config mail the postmaster through the pipeline itself, each rule with a cooldown.

A gateway in this process on a ManualClock (tests/peers/harness.py), delivering
through the smarthost plugin to a real recording SMTP sink.
"""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from tests.peers.harness import Harness, until
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink


def config(workdir: Path, sink: RecordingSink) -> dict[str, Any]:
    return {
        "hostname": "gw.alerts.test",
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        "chain": [
            {"smarthost": {"server": "127.0.0.1", "port": sink.port, "tls": "none"}},
            {"retry": {"every": "10m", "expire_after": "2d"}},
            {"alerts": {"cooldown": "4h", "check_every": "1h",
                        "rules": {"oldest_message": "1h", "deferred": 0, "smarthost_login": True}}},
        ],
    }


def subjects(sink: RecordingSink) -> list[str]:
    return [str(message_from_bytes(m.data, policy=policy.default)["Subject"])
            for m in sink.messages if m.mail_from in ("", "<>")]


async def _alerts(workdir: Path, sink: RecordingSink) -> None:
    async with Harness(workdir, config(workdir, sink)) as h:
        alerts = h.plugin("alerts")
        sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"
        await h.submit("alice@origin.test", ["bob@dest.test"])
        await h.tick()
        assert await alerts.check() == ["deferred"]
        assert await h.tick() == 1  # the alert leaves through the chain like any message
        assert subjects(sink) == ["[mailpipe alert] gw.alerts.test: 1 deferred recipients"]
        alert = sink.messages[0]
        assert alert.rcpt_tos == ["postmaster@gw.alerts.test"] and alert.mail_from in ("", "<>")
        assert b"Auto-Submitted: auto-generated" in alert.data

        h.clock.advance(2 * 3600)  # the message is now 2h old; "deferred" is still in its cooldown
        assert await alerts.check() == ["oldest_message"]
        assert await alerts.check() == []  # both rules cooling down
        await h.tick()
        assert subjects(sink)[-1] == "[mailpipe alert] gw.alerts.test: a message has waited 2 hours"

        # an event rule: the ISP refuses the login (twice: one alert)
        for _ in range(2):
            h.emit("smarthost.login_failed", "login as gateway refused: 535 5.7.8", level="error")

        async def login_alert_queued() -> bool:
            return [e.data.get("rule") for e in await h.events("alert.sent")][2:] == ["smarthost_login"]

        await until(login_alert_queued, 10, "the smarthost_login alert to be queued")
        await h.tick()
        login_alerts = [s for s in subjects(sink) if "refuses mailpipe's login" in s]
        assert login_alerts == ["[mailpipe alert] gw.alerts.test: the ISP's mail server refuses mailpipe's login"]
        assert b"535 5.7.8" in sink.messages[-1].data

        h.clock.advance(5 * 3600)  # past the cooldown: both queue rules speak again
        assert sorted(await alerts.check()) == ["deferred", "oldest_message"]
        rules = [e.data.get("rule") for e in await h.events("alert.sent")]
        assert rules == ["deferred", "oldest_message", "smarthost_login", "oldest_message", "deferred"]


def test_alerts_mail_postmaster_with_cooldown(workdir: Path) -> None:
    """Queue rules fire once per cooldown, an event rule once for two events; each alert is mailed to postmaster."""
    with RecordingSink() as sink:
        asyncio.run(_alerts(workdir, sink))
