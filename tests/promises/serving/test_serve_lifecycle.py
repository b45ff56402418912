"""A running ``pipeline serve`` on its own: the retry timer, and SIGTERM with a delivery in flight.

docs/retry-and-logs.md: a recipient that failed temporarily is attempted again after ``retry.every``.
docs/operations.md: on SIGTERM the gateway lets deliveries in flight finish for up to
``delivery.shutdown_grace``, cuts the rest (they stay queued and are due again at the next start)
and exits 0.
"""

from __future__ import annotations

import threading
import time

from tests.peers.sink import RecordingSink

from .helpers import show, submit, wait_log, wait_states

GRACE = 2.0


def smarthost_config(sink: RecordingSink, *, every: str = "1h", **delivery: object) -> dict:
    return {
        "hostname": "gw.test",
        "delivery": dict(delivery),
        "chain": [{"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "none"}},
                  {"retry": {"every": every, "expire_after": "1d"}}],
    }


def test_serve_retries_deferred_mail_on_its_own_after_retry_every(mailpipe_factory):
    """The sink answers 451 once, then accepts: the gateway delivers 2s later by itself, no ``queue retry``."""
    with RecordingSink("127.0.0.1") as sink:
        sink.behaviour.rcpt["bob@remote.test"] = "451 4.2.1 mailbox busy, try again later"
        gw = mailpipe_factory(smarthost_config(sink, every="2s"))
        with gw:
            queue_id = submit(gw, ["bob@remote.test"], "retried by the timer")
            wait_log(gw, f"message.deferred: {queue_id}: <bob@remote.test>")  # the first attempt got the 451
            del sink.behaviour.rcpt["bob@remote.test"]
            got = sink.wait_for(1, timeout=20)
            shown = wait_states(gw, queue_id, {"bob@remote.test": "delivered"})
    assert got[0].rcpt_tos == ["bob@remote.test"]
    assert b"Subject: retried by the timer" in got[0].data
    first, second = shown["attempts"]
    assert (first["outcome"], first["code"], first["enhanced"]) == ("temporary", 451, "4.2.1")
    assert "mailbox busy, try again later" in first["text"]
    assert (second["outcome"], second["code"]) == ("delivered", 250)
    # The second attempt waited retry.every (2s) and no longer than needed.
    assert 2.0 <= second["time"] - first["time"] < 12.0
    assert len(sink.messages) == 1


def test_sigterm_cuts_delivery_after_shutdown_grace_and_mail_stays_queued(mailpipe_factory):
    """A sink holds the final dot; SIGTERM: exit 0 after the grace, message still pending, sent after restart."""
    hold = threading.Event()
    with RecordingSink("127.0.0.1") as sink:
        sink.behaviour.hold_data = hold
        gw = mailpipe_factory(smarthost_config(sink, shutdown_grace=f"{GRACE:.0f}s"))
        try:
            gw.start()
            queue_id = submit(gw, ["bob@remote.test"], "in flight at shutdown")
            sink.wait_for_command("DATA")  # the whole message is at the sink; its final dot is unanswered
            began = time.monotonic()
            status = gw.stop(timeout=30)
            took = time.monotonic() - began
            assert status == 0, gw.log_text()
            assert GRACE <= took < GRACE + 6, f"exited {took:.1f}s after SIGTERM\n{gw.log_text()}"
            assert "1 deliveries cut short by shutdown; they stay queued" in gw.log_text()
            assert sink.messages == []

            listed = gw.cli_json("queue", "list")
            assert [(m["id"], m["recipients"]) for m in listed] == [(queue_id, {"pending": 1})]
            assert show(gw, queue_id)["attempts"] == []  # cut, not failed: no attempt is recorded

            hold.set()
            gw.start()
            got = sink.wait_for(1, timeout=20)
            shown = wait_states(gw, queue_id, {"bob@remote.test": "delivered"})
        finally:
            hold.set()
    assert got[0].rcpt_tos == ["bob@remote.test"]
    assert b"Subject: in flight at shutdown" in got[0].data
    assert [a["outcome"] for a in shown["attempts"]] == ["delivered"]
    assert len(sink.messages) == 1
