"""Applying a changed config to a running ``pipeline serve`` (SIGHUP, as the console's Save does).

A delivery in flight when the smarthost's options change finishes once, with
the old instance; a bad file is refused and the gateway keeps running on the
config it had; live sessions show in /metrics.
"""

from __future__ import annotations

import re
import signal
import threading
import time

import httpx

from tests.console.conftest import ConsoleSetup, poll


def metric(setup: ConsoleSetup, name: str) -> float:
    text = httpx.get(setup.metrics_url).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else -1.0


def test_sighup_reload_keeps_mail_in_flight(console_setup: ConsoleSetup) -> None:
    """The sink holds the final dot until the reload has happened: the delivery was in flight across it,
    and finishes once (one message, one delivered recipient)."""
    setup, proc = console_setup, console_setup.mailpipe
    release = threading.Event()
    setup.sink.behaviour.hold_data = release  # a slow ISP: the 250 after the dot waits for the test
    setup.send(["bob@dest.test"])
    setup.sink.wait_for_command("DATA")  # the whole message is at the ISP; the reply is held
    poll(lambda: metric(setup, 'mailpipe_sessions{direction="out"}') == 1.0, 10, "a delivery in flight")

    text = proc.config_path.read_text()
    proc.config_path.write_text(text.replace("      tls: none\n", "      tls: none\n      max_connections: 2\n"))
    proc.proc.send_signal(signal.SIGHUP)
    poll(lambda: "config.reloaded" in proc.log_text(), 10, "the reload")
    reloaded_at = time.monotonic()
    assert "new smarthost" in proc.log_text()
    assert setup.sink.messages == [], "the delivery finished before the reload"
    release.set()

    [got] = setup.sink.wait_for(1)
    assert got.rcpt_tos == ["bob@dest.test"]
    assert got.data_started < reloaded_at < got.finished, "the delivery was not in flight during the reload"
    poll(lambda: proc.cli_json("queue", "list") == [], 10, "an empty queue")
    assert len(setup.sink.messages) == 1
    assert metric(setup, 'mailpipe_recipients_total{outcome="delivered"}') == 1.0
    assert metric(setup, 'mailpipe_sessions{direction="out"}') == 0.0

    # A broken file is refused; the running configuration stays and mail still flows.
    proc.config_path.write_text(text.replace("every: 15m", "every: whenever"))
    proc.proc.send_signal(signal.SIGHUP)
    poll(lambda: "config.reload_failed" in proc.log_text(), 10, "the refused reload")
    assert "chain[1].retry.every" in proc.log_text()
    setup.send(["carol@dest.test"])
    assert [m.rcpt_tos for m in setup.sink.wait_for(2)] == [["bob@dest.test"], ["carol@dest.test"]]
    assert proc.proc.poll() is None
