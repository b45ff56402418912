"""The queue promise: after 250 the message survives kill -9; delivered recipients are never resent."""

from __future__ import annotations

import smtplib

from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink

from .helpers import make_message


def config(sink: RecordingSink, **delivery: object) -> dict:
    return {
        "hostname": "gw.test",
        "delivery": {"shutdown_grace": "5s", **delivery},
        "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                  {"retry": {"every": "15m", "expire_after": "2d"}}],
    }


def send(gw, sender: str, rcpts: list[str], subject: str) -> str:
    host, port = gw.address
    with smtplib.SMTP(host, port) as client:
        client.ehlo("client.test")
        client.mail(sender)
        for r in rcpts:
            client.rcpt(r)
        code, text = client.data(make_message(subject))
    assert code == 250
    return text.decode().rsplit(" ", 1)[-1]


def test_sigkill_right_after_250_then_delivered_after_restart(mailpipe_factory):
    with RecordingSink("127.0.1.33") as sink:
        # Not sending immediately and no schedule: the message can only sit in the queue.
        gw = mailpipe_factory(config(sink, send_immediately=False))
        gw.start()
        queue_id = send(gw, "alice@example.org", ["bob@example.net"], "survives kill")
        gw.kill()
        assert sink.messages == []
        gw.write_config(config(sink, send_immediately=True))
        gw.start()
        got = sink.wait_for(1)
        assert got[0].rcpt_tos == ["bob@example.net"]
        assert b"Subject: survives kill" in got[0].data
        wait_until(lambda: gw.cli_json("queue", "show", queue_id)["recipients"][0]["state"] == "delivered",
                   10, "delivery recorded")


def test_delivered_recipient_not_sent_again_after_kill(mailpipe_factory):
    """One recipient delivered and recorded, the other deferred (450); kill -9; only the second is sent later."""
    with RecordingSink("127.0.1.34") as sink:
        sink.behaviour.rcpt["later@example.net"] = "450 4.2.0 mailbox busy, try later"
        gw = mailpipe_factory(config(sink))
        gw.start()
        queue_id = send(gw, "alice@example.org", ["now@example.net", "later@example.net"], "two recipients")
        sink.wait_for(1)

        def states() -> dict[str, str]:
            shown = gw.cli_json("queue", "show", queue_id)
            return {r["address"]: r["state"] for r in shown["recipients"]}

        wait_until(lambda: states() == {"now@example.net": "delivered", "later@example.net": "deferred"},
                   10, "first attempt recorded")
        shown = gw.cli_json("queue", "show", queue_id)
        deferred = [a for a in shown["attempts"] if a["recipient"] == "later@example.net"]
        assert deferred[0]["outcome"] == "temporary" and deferred[0]["code"] == 450
        assert "mailbox busy" in deferred[0]["text"]
        text = gw.cli("queue", "show", queue_id).stdout
        assert "later@example.net" in text and "deferred" in text and "450" in text

        gw.kill()
        del sink.behaviour.rcpt["later@example.net"]
        gw.start()
        gw.cli("queue", "retry", queue_id)
        got = sink.wait_for(2)
        assert [m.rcpt_tos for m in got] == [["now@example.net"], ["later@example.net"]]
        wait_until(lambda: states() == {"now@example.net": "delivered", "later@example.net": "delivered"},
                   10, "second attempt recorded")
        assert len(sink.messages) == 2
        assert gw.stop() == 0


def test_sigterm_exits_zero_and_leaves_undelivered_mail_queued(mailpipe_factory):
    with RecordingSink("127.0.1.35") as sink:
        sink.behaviour.rcpt["bob@example.net"] = "451 4.3.0 not now"
        gw = mailpipe_factory(config(sink))
        gw.start()
        queue_id = send(gw, "alice@example.org", ["bob@example.net"], "stays")
        wait_until(lambda: gw.cli_json("queue", "show", queue_id)["attempts"] != [], 10, "attempt recorded")
        assert gw.stop() == 0
        listed = gw.cli_json("queue", "list")
        assert [m["id"] for m in listed] == [queue_id]
        assert listed[0]["recipients"] == {"deferred": 1}


def test_permanent_failure_never_tried_again_after_restart(mailpipe_factory):
    """A recipient that failed permanently is never tried again after kill -9, restart and `queue retry --all`.

    The barrier before asserting "nothing was retried": a fresh message sent after the
    retry call is delivered by the restarted server. It delivers one message at a time
    (``concurrency: 1``) in order of due time, so had the restart or the retry made the
    failed recipient due again, that attempt would have reached the sink before the
    fresh message.
    """
    with RecordingSink("127.0.1.43") as sink:
        sink.behaviour.rcpt["gone@example.net"] = "550 5.1.1 no such user"
        gw = mailpipe_factory(config(sink, concurrency=1))
        gw.start()
        queue_id = send(gw, "alice@example.org", ["gone@example.net"], "to a dead address")
        wait_until(lambda: gw.cli_json("queue", "show", queue_id)["recipients"][0]["state"] == "failed",
                   10, "permanent failure recorded")
        # The bounce to alice goes out through the same sink; both messages are done before the kill.
        bounce = sink.wait_for(1)[0]
        assert bounce.mail_from == "<>" and bounce.rcpt_tos == ["alice@example.org"]
        assert b"Final-Recipient: rfc822; gone@example.net" in bounce.data and b"Status: 5.1.1" in bounce.data
        wait_until(lambda: gw.cli_json("queue", "list") == [], 10, "bounce recorded as delivered")
        gw.kill()
        del sink.behaviour.rcpt["gone@example.net"]  # the address would work now: it must not be tried
        gw.start()
        assert gw.cli_json("queue", "retry", "--all") == {"command": "retry", "count": 0, "server_woken": True}
        marker_id = send(gw, "carol@example.org", ["marker@example.net"], "after the restart")
        got = sink.wait_for(2)
        wait_until(lambda: gw.cli_json("queue", "show", marker_id)["recipients"][0]["state"] == "delivered",
                   10, "the fresh message recorded as delivered")
        assert gw.stop() == 0
        assert [(m.mail_from, m.rcpt_tos) for m in got] == [("<>", ["alice@example.org"]),
                                                            ("carol@example.org", ["marker@example.net"])]
        assert len(sink.messages) == 2
        shown = gw.cli_json("queue", "show", queue_id)
        assert [(a["recipient"], a["outcome"], a["code"]) for a in shown["attempts"]] == [
            ("gone@example.net", "permanent", 550)]
        assert shown["recipients"][0]["state"] == "failed"
        assert gw.cli_json("queue", "list") == []
        log = gw.log_text()
        assert log.count("gateway.started:") == 2
        # the one permanent failure, before the kill (one log line; its key=value fields name it again)
        assert sum("<gone@example.net>" in line for line in log.splitlines()) == 1
