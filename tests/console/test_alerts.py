"""Alerts: rules in config mail the postmaster through the pipeline itself, each rule with a cooldown.

A gateway in this process on a ManualClock, delivering through the smarthost
plugin to a real recording SMTP sink.
"""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path

import yaml

from mailpipe.core.clock import ManualClock
from mailpipe.core.config import load_config
from mailpipe.core.gateway import Gateway
from mailpipe.plugins.alerts import AlertsPlugin
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink
from tests.retry.helpers import queue_message


def config(workdir: Path, sink: RecordingSink) -> Path:
    path = workdir / "mailpipe.yaml"
    path.write_text(yaml.safe_dump({
        "hostname": "gw.alerts.test",
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        "chain": [
            {"smarthost": {"server": "127.0.0.1", "port": sink.port, "tls": "none"}},
            {"retry": {"every": "10m", "expire_after": "2d"}},
            {"alerts": {"cooldown": "4h", "check_every": "1h",
                        "rules": {"oldest_message": "1h", "deferred": 0, "smarthost_login": True}}},
        ],
    }, sort_keys=False))
    return path


def subjects(sink: RecordingSink) -> list[str]:
    return [str(message_from_bytes(m.data, policy=policy.default)["Subject"])
            for m in sink.messages if m.mail_from in ("", "<>")]


async def _alerts(workdir: Path, sink: RecordingSink) -> None:
    clock = ManualClock()
    gw = Gateway(load_config(config(workdir, sink)), clock=clock)
    await gw.open()
    try:
        alerts = next(p for p in gw.plugins if isinstance(p, AlertsPlugin))
        sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"
        await queue_message(gw, "alice@origin.test", ["bob@dest.test"])
        await gw.scheduler.tick()
        assert await alerts.check() == ["deferred"]
        await gw.scheduler.tick()  # the alert leaves through the chain like any message
        assert subjects(sink) == ["[mailpipe alert] gw.alerts.test: 1 deferred recipients"]
        alert = sink.messages[0]
        assert alert.rcpt_tos == ["postmaster@gw.alerts.test"] and alert.mail_from in ("", "<>")
        assert b"Auto-Submitted: auto-generated" in alert.data

        clock.advance(2 * 3600)  # the message is now 2h old; "deferred" is still in its cooldown
        assert await alerts.check() == ["oldest_message"]
        assert await alerts.check() == []  # both rules cooling down
        await gw.scheduler.tick()
        assert "a message has waited 2 hours" in subjects(sink)[-1]

        # an event rule: the ISP refuses the login (twice: one alert)
        for _ in range(2):
            gw.events.emit("smarthost.login_failed", "login as gateway refused: 535 5.7.8", level="error")
        for _ in range(100):
            if "smarthost_login" in alerts.last_sent:
                break
            await asyncio.sleep(0.02)
        await gw.scheduler.tick()
        assert sum("refuses mailpipe's login" in s for s in subjects(sink)) == 1

        clock.advance(5 * 3600)  # past the cooldown: both queue rules speak again
        assert sorted(await alerts.check()) == ["deferred", "oldest_message"]
        events = await gw.queue.events(kind="alert.sent")
        assert len(events) == 5
    finally:
        await gw.scheduler.stop(5)
        await gw.close()


def test_alerts_mail_postmaster_with_cooldown(workdir: Path) -> None:
    with RecordingSink() as sink:
        asyncio.run(_alerts(workdir, sink))
