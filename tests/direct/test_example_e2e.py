"""examples/direct.yaml under ``pipeline serve``: smtplib in, dnsmasq for DNS, MX sinks out."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.direct.aliases import DnsmasqFactory, MxSinks
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "direct.yaml"


def test_example_config_delivers_to_each_domains_mx(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, mx_port: int,
        mailpipe_factory: Callable[..., MailpipeProcess], workdir: Path,
) -> None:
    """examples/direct.yaml under `pipeline serve`: each domain's MX gets its recipient; a null MX fails 556 5.1.10."""
    dns = dnsmasq_factory([
        "local=/test/",
        "mx-host=one.test,mx.one.test,10", "host-record=mx.one.test,127.0.1.21",
        "mx-host=two.test,mx.two.test,10", "host-record=mx.two.test,127.0.1.22",
        "dns-rr=nullmx.test,15,000000",
    ])
    s1, s2 = mx_sinks("127.0.1.21", "127.0.1.22")
    port = free_port()
    gw = mailpipe_factory(yaml.safe_load(EXAMPLE.read_text()), env={
        "MAILPIPE_HOSTNAME": "gw.test",
        "MAILPIPE_LISTEN": f"127.0.0.1:{port}",
        "MAILPIPE_STATE_DIR": str(workdir / "state"),
        "MAILPIPE_DNS_SERVER": f"{dns.address}:{dns.port}",
        "MAILPIPE_DIRECT_PORT": str(mx_port),
    })
    gw.config["listen"] = [f"127.0.0.1:{port}"]
    with gw:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.test")
            assert client.mail("")[0] == 250
            for rcpt in ("a@one.test", "b@two.test", "c@nullmx.test"):
                assert client.rcpt(rcpt)[0] == 250
            code, text = client.data(b"Subject: direct\r\n\r\nHello.\r\n")
        assert code == 250
        queue_id = text.decode().rsplit(" ", 1)[-1]
        assert s1.wait_for(1)[0].rcpt_tos == ["a@one.test"]
        assert s2.wait_for(1)[0].rcpt_tos == ["b@two.test"]

        def shown() -> dict:
            return gw.cli_json("queue", "show", queue_id)

        wait_until(lambda: all(r["state"] != "pending" for r in shown()["recipients"]), 20,
                   "every recipient to be attempted", lambda: str(shown()))
        detail = shown()
    assert {r["address"]: r["state"] for r in detail["recipients"]} == {
        "a@one.test": "delivered", "b@two.test": "delivered", "c@nullmx.test": "failed"}
    [null_mx] = [a for a in detail["attempts"] if a["recipient"] == "c@nullmx.test"]
    assert (null_mx["outcome"], null_mx["code"], null_mx["enhanced"]) == ("permanent", 556, "5.1.10")
    assert null_mx["action"] == "bounced"  # failed for good (from the null sender, nobody is told)
