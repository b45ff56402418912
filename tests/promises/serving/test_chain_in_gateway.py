"""How a running gateway routes each recipient through the chain (docs/configuration.md, docs/smarthost.md).

* ``smarthost`` with ``domains:`` beside ``direct``: the listed domains leave through the smarthost,
  every other recipient goes straight to its domain's MX host (found through dnsmasq);
* no chain entry routes a recipient: a temporary failure ``451 4.4.0`` for it and the event
  ``route.none`` (docs/operations.md, "What happens when things go wrong").
"""

from __future__ import annotations

from tests.peers.sink import RecordingSink

from .helpers import events, show, submit, wait_states

MX_HOST = "127.0.1.71"


def test_smarthost_domains_beside_direct(mailpipe_factory, dnsmasq_factory):
    """One message to two corporate and two outside recipients: each pair leaves by its own way."""
    with RecordingSink("127.0.1.70") as smarthost, RecordingSink(MX_HOST) as mx:
        dns = dnsmasq_factory([
            "local=/test/",
            "mx-host=outside.test,mx.outside.test,10",
            f"host-record=mx.outside.test,{MX_HOST}",
        ])
        gw = mailpipe_factory({
            "hostname": "gw.test",
            "delivery": {"timeout": "10s"},
            "chain": [
                {"smarthost": {"server": f"{smarthost.host}:{smarthost.port}", "tls": "none",
                               "domains": ["corp.test", "branch.corp.test"]}},
                {"direct": {"dns_servers": [f"{dns.address}:{dns.port}"], "port": mx.port, "tls": "none"}},
                {"retry": {"every": "1h"}},
            ],
        })
        assert gw.cli_json("route", "ann@Corp.Test")[0]["plugin"] == "smarthost"
        assert gw.cli_json("route", "otto@outside.test")[0]["plugin"] == "direct"
        with gw:
            queue_id = submit(gw, ["ann@corp.test", "otto@outside.test", "bea@branch.corp.test",
                                   "olga@outside.test"], "two ways out")
            shown = wait_states(gw, queue_id, {"ann@corp.test": "delivered", "otto@outside.test": "delivered",
                                               "bea@branch.corp.test": "delivered",
                                               "olga@outside.test": "delivered"})
        via_smarthost = smarthost.wait_for(1)
        via_mx = mx.wait_for(1)
    assert [m.rcpt_tos for m in via_smarthost] == [["ann@corp.test", "bea@branch.corp.test"]]
    assert [m.rcpt_tos for m in via_mx] == [["otto@outside.test", "olga@outside.test"]]
    assert b"Subject: two ways out" in via_smarthost[0].data and b"Subject: two ways out" in via_mx[0].data
    routes = {a["recipient"]: (a["route"], a["remote_host"]) for a in shown["attempts"]}
    assert routes["ann@corp.test"] == routes["bea@branch.corp.test"] == (
        f"smarthost:{smarthost.host}:{smarthost.port}", f"{smarthost.host}:{smarthost.port}")
    assert routes["otto@outside.test"] == routes["olga@outside.test"] == ("direct:outside.test", "mx.outside.test")
    assert ("MX", "outside.test") in {(q.qtype, q.name) for q in dns.queries()}
    assert not any("corp.test" in q.name for q in dns.queries())  # the smarthost's domains need no DNS


def test_no_route_is_451_4_4_0_and_a_route_none_event(mailpipe_factory):
    """Only corp.test is routed: the other recipient stays queued with 451 4.4.0 and ``route.none`` is logged."""
    with RecordingSink("127.0.1.72") as smarthost:
        gw = mailpipe_factory({
            "hostname": "gw.test",
            "chain": [{"smarthost": {"server": f"{smarthost.host}:{smarthost.port}", "tls": "none",
                                     "domains": ["corp.test"]}},
                      {"retry": {"every": "1h"}}],
        })
        with gw:
            queue_id = submit(gw, ["ann@corp.test", "nobody@elsewhere.test"], "half routed")
            shown = wait_states(gw, queue_id, {"ann@corp.test": "delivered", "nobody@elsewhere.test": "deferred"})
            route_events = events(gw, "route")
            listed = gw.cli_json("queue", "list")
        assert [m.rcpt_tos for m in smarthost.wait_for(1)] == [["ann@corp.test"]]
    unrouted = [a for a in shown["attempts"] if a["recipient"] == "nobody@elsewhere.test"]
    assert len(unrouted) == 1
    assert (unrouted[0]["outcome"], unrouted[0]["code"], unrouted[0]["enhanced"], unrouted[0]["text"]) == (
        "temporary", 451, "4.4.0", "no route for this recipient")
    rcpt = next(r for r in shown["recipients"] if r["address"] == "nobody@elsewhere.test")
    assert rcpt["last_reply"] == "451 4.4.0 no route for this recipient"
    assert [(e["kind"], e["level"], e["text"], e["data"]) for e in route_events] == [
        ("route.none", "warning", f"{queue_id}: no chain entry routes nobody@elsewhere.test",
         {"message": queue_id})]
    assert [(m["id"], m["recipients"]) for m in listed] == [(queue_id, {"deferred": 1, "delivered": 1})]
    assert f"route.none: {queue_id}: no chain entry routes nobody@elsewhere.test" in gw.log_text()
    assert show(gw, queue_id)["recipients"][1]["next_attempt"] is not None
