"""Applying a changed config to a running ``pipeline serve`` (SIGHUP, as the console's Save does).

A delivery in flight when the smarthost's options change finishes once, with
the old instance; a bad file is refused and the gateway keeps running on the
config it had; live sessions show in /metrics.
"""

from __future__ import annotations

import re
import signal

import httpx

from tests.console.conftest import ConsoleSetup, poll


def metric(setup: ConsoleSetup, name: str) -> float:
    text = httpx.get(setup.metrics_url).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else -1.0


def test_sighup_reload_keeps_mail_in_flight(console_setup: ConsoleSetup) -> None:
    setup, proc = console_setup, console_setup.mailpipe
    setup.sink.behaviour.data_delay = 2.0  # a slow ISP: the delivery is in flight for 2 s
    setup.send(["bob@dest.test"])
    poll(lambda: metric(setup, 'mailpipe_sessions{direction="out"}') == 1.0, 10, "a delivery in flight")

    text = proc.config_path.read_text()
    proc.config_path.write_text(text.replace("      tls: none\n", "      tls: none\n      max_connections: 2\n"))
    proc.proc.send_signal(signal.SIGHUP)
    poll(lambda: "config.reloaded" in proc.log_text(), 10, "the reload")
    assert "new smarthost" in proc.log_text()

    setup.sink.wait_for(1)
    poll(lambda: proc.cli_json("queue", "list") == [], 10, "an empty queue")
    assert len(setup.sink.messages) == 1
    assert metric(setup, 'mailpipe_recipients_total{outcome="delivered"}') == 1.0
    assert metric(setup, 'mailpipe_sessions{direction="out"}') == 0.0

    # A broken file is refused; the running configuration stays and mail still flows.
    setup.sink.behaviour.data_delay = 0.0
    proc.config_path.write_text(text.replace("every: 15m", "every: whenever"))
    proc.proc.send_signal(signal.SIGHUP)
    poll(lambda: "config.reload_failed" in proc.log_text(), 10, "the refused reload")
    assert "chain[1].retry.every" in proc.log_text()
    setup.send(["carol@dest.test"])
    setup.sink.wait_for(2)
    assert proc.proc.poll() is None
