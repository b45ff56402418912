"""examples/direct.yaml under ``pipeline serve``: smtplib in, dnsmasq for DNS, MX sinks out."""

from __future__ import annotations

import smtplib
from pathlib import Path

import yaml

from tests.peers.net import free_port, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "direct.yaml"


def test_example_config_delivers_to_each_domains_mx(
        dnsmasq_factory, mx_sinks, mx_port, mailpipe_factory, workdir):
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
        with smtplib.SMTP("127.0.0.1", port) as client:
            refused = client.sendmail("", ["a@one.test", "b@two.test", "c@nullmx.test"],
                                      b"Subject: direct\r\n\r\nHello.\r\n")
            assert refused == {}
        assert s1.wait_for(1)[0].rcpt_tos == ["a@one.test"]
        assert s2.wait_for(1)[0].rcpt_tos == ["b@two.test"]

        def bounced() -> bool:
            rows = gw.cli_json("queue", "list", "--state", "failed")
            return bool(rows)

        wait_until(bounced, 20, "the null-MX recipient to fail")
