"""Sending limits on the delivery plugins: deferred to the next slot (never bounced), shared, adaptive backoff.

The real gateway on a manual clock delivers to recording sinks (smarthost) or to an MX found
through a private dnsmasq (direct); counts live in the queue's database.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.peers.fixtures import DnsmasqFactory
from tests.peers.harness import SyncHarness
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import HOSTNAME, smarthost

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC: a whole hour
HOUR = 3600.0
SLOT = HOUR + HOUR / 60  # the first message's bucket leaves the window a bucket after the hour


def config(workdir: Path, entry: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"hostname": HOSTNAME, "state_dir": str(workdir / "state"), "listen": [f"127.0.0.1:{free_port()}"],
            "chain": [entry, {"retry": {"every": "1m", "expire_after": "10m"}}], **extra}


def clock_text(t: float) -> str:
    return time.strftime("%H:%M", time.localtime(t))


def test_over_the_limit_waits_for_its_slot_and_is_never_bounced(workdir: Path) -> None:
    with RecordingSink() as sink:
        entry = smarthost(sink.port, limits=[{"per": "account", "max": 1, "every": "1h"}])
        gw = SyncHarness(workdir, config(workdir, entry), start=T0)
        try:
            ids = [gw.submit("alice@corp.example", [f"r{i}@remote.example"]) for i in range(3)]
            gw.deliver()
            assert len(sink.messages) == 1
            waiting = [m for m in ids if list(gw.states(m).values()) == ["deferred"]]
            assert len(waiting) == 2
            a = gw.last_attempts(waiting[0])
            [attempt] = a.values()
            assert (attempt.code, attempt.enhanced) == (451, "4.7.0")
            assert attempt.text == f"limit 1/h for 127.0.0.1:{sink.port} reached; next slot {clock_text(T0 + SLOT)}"
            assert gw.run(gw.h.next_attempt(waiting[0], attempt.recipient)) == T0 + SLOT
            [reached] = gw.events("limits.reached")  # once per slot, not once per message
            assert "mail waits in the queue until" in reached.text

            gw.clock.set(T0 + SLOT)  # far past retry's expire_after (10m): a limit never bounces
            gw.deliver()
            assert len(sink.messages) == 2
            gw.clock.set(T0 + 2 * SLOT)
            gw.deliver()
            assert len(sink.messages) == 3
            assert all(set(gw.states(m).values()) == {"delivered"} for m in ids)
            assert not gw.events("message.expired") and not gw.events("message.bounced")
        finally:
            gw.close()


def test_sender_recipients_and_domain_limits(workdir: Path) -> None:
    with RecordingSink() as sink:
        entry = smarthost(sink.port, limits=[{"per": "sender", "max": 3, "every": "1d", "count": "recipients"},
                                             {"per": "domain", "max": 1, "every": "1m"}])
        gw = SyncHarness(workdir, config(workdir, entry), start=T0)
        try:
            first = gw.submit("alice@corp.example", ["a@x.example", "b@y.example"])
            gw.deliver()
            assert set(gw.states(first).values()) == {"delivered"}
            second = gw.submit("alice@corp.example", ["c@x.example", "d@z.example"])
            gw.deliver()
            # x.example had its one message this minute; z.example's recipient then fits alice's 3 per day
            assert gw.states(second) == {"c@x.example": "deferred", "d@z.example": "delivered"}
            assert "limit 1/min for x.example reached" in gw.last_attempts(second)["c@x.example"].text
            gw.clock.set(T0 + 62)
            gw.deliver()  # x.example has room again, but alice has used her 3 recipients today
            text = gw.last_attempts(second)["c@x.example"].text
            assert text.startswith("limit 3 recipients/d for alice@corp.example reached; next slot ")
            other = gw.submit("bob@corp.example", ["e@w.example"])
            gw.deliver()
            assert gw.states(other) == {"e@w.example": "delivered"}  # another sender, another count
        finally:
            gw.close()


def test_counts_survive_a_restart(workdir: Path) -> None:
    with RecordingSink() as sink:
        cfg = config(workdir, smarthost(sink.port, limits=[{"per": "sender", "max": 1, "every": "1h"}]))
        gw = SyncHarness(workdir, cfg, start=T0)
        try:
            gw.submit("alice@corp.example", ["a@remote.example"])
            gw.deliver()
        finally:
            gw.close()
        gw = SyncHarness(workdir, cfg, start=T0 + 60)
        try:
            mid = gw.submit("alice@corp.example", ["b@remote.example"])
            gw.deliver()
            assert gw.states(mid) == {"b@remote.example": "deferred"}
            assert len(sink.messages) == 1
        finally:
            gw.close()


def test_connections_at_once(workdir: Path) -> None:
    with RecordingSink() as sink:
        sink.behaviour.data_delay = 0.3
        entry = smarthost(sink.port, max_connections=4, limits=[{"per": "account", "connections": 1}])
        gw = SyncHarness(workdir, config(workdir, entry), start=T0)
        try:
            for i in range(4):
                gw.submit("alice@corp.example", [f"r{i}@remote.example"])
            gw.deliver()
            assert len(sink.messages) == 4
            assert sink.peak == 1
        finally:
            gw.close()


def test_too_many_reply_slows_the_destination(workdir: Path) -> None:
    with RecordingSink() as sink:
        sink.behaviour.data = "421 4.7.0 Too many messages from your account, slow down"
        entry = smarthost(sink.port, backoff={"initial": "1m", "max": "10m"})
        gw = SyncHarness(workdir, config(workdir, entry), start=T0)
        try:
            first = gw.submit("alice@corp.example", ["a@remote.example"])
            gw.deliver()
            assert gw.states(first) == {"a@remote.example": "deferred"}
            [event] = gw.events("limits.backoff")
            assert event.data["pause"] == 60 and "Too many messages" in event.text
            second = gw.submit("alice@corp.example", ["b@remote.example"])
            gw.deliver()
            held_back = gw.last_attempts(second)["b@remote.example"]
            assert held_back.text.startswith(f"127.0.0.1:{sink.port} asked to slow down (421 4.7.0 ")
            assert gw.run(gw.h.next_attempt(second, "b@remote.example")) == T0 + 60
            connections = len(sink.connections)

            gw.clock.set(T0 + 60)  # the pause is over; the server still says too many: the pause doubles
            gw.deliver()
            assert [e.data["pause"] for e in gw.events("limits.backoff")] == [60, 120]
            assert len(sink.connections) > connections
            sink.behaviour.data = None
            gw.clock.set(T0 + 60 + 120)
            gw.deliver()
            assert set(gw.states(first).values()) == set(gw.states(second).values()) == {"delivered"}
            gw.clock.advance(1)
            gw.submit("alice@corp.example", ["c@remote.example"])
            gw.deliver()
            assert len(gw.events("limits.backoff_ended")) == 1
        finally:
            gw.close()


def test_direct_limit_per_domain(workdir: Path, dnsmasq_factory: DnsmasqFactory) -> None:
    mx = "127.0.1.21"
    with RecordingSink(mx) as sink:
        dns = dnsmasq_factory(["local=/test/", "mx-host=limited.test,mx.limited.test,10",
                               f"host-record=mx.limited.test,{mx}"])
        host, port = dns.nameserver
        entry = {"direct": {"port": sink.port, "dns_servers": [f"{host}:{port}"], "tls": "none",
                            "limits": [{"per": "domain", "max": 2, "every": "1h", "count": "recipients"}]}}
        gw = SyncHarness(workdir, config(workdir, entry, delivery={"timeout": "5s"}), start=T0)
        try:
            first = gw.submit("alice@corp.example", ["a@limited.test", "b@limited.test"])
            second = gw.submit("alice@corp.example", ["c@limited.test"])
            gw.deliver()
            states = {**gw.states(first), **gw.states(second)}
            assert sorted(states.values()) == ["deferred", "delivered", "delivered"] or \
                sorted(states.values()) == ["deferred", "deferred", "delivered"]
            assert sum(len(m.rcpt_tos) for m in sink.messages) <= 2
            waiting = [r for r, s in states.items() if s == "deferred"]
            mid = second if waiting == ["c@limited.test"] else first
            assert "limit 2 recipients/h for limited.test reached" in gw.last_attempts(mid)[waiting[0]].text
        finally:
            gw.close()
