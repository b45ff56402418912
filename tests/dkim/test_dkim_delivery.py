"""DKIM signing end to end: SMTP intake -> queue -> smarthost delivery -> sink, verified by OpenDKIM and Mail::DKIM.

The signer is dkimpy; the verifiers are not: OpenDKIM's filter in test mode (RSA and Ed25519,
keys from a file) and Perl's Mail::DKIM (RSA, keys from a test dnsmasq).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import dkim as dkimpy

from mailpipe.plugins.dkim.keys import load_key
from mailpipe.plugins.dkim.options import KeySpec
from tests.core.helpers import RawClient
from tests.peers.dnsmasq import DnsmasqPeer
from tests.peers.harness import Harness
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .conftest import Keys
from .verifiers import opendkim_verify, perl_verify, txt_records


def config(workdir: Path, sink: RecordingSink, dkim_entry: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "hostname": "gw.example.org",
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        **top,
        "chain": [dkim_entry, {"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "none"}},
                  {"retry": {"every": "10m", "expire_after": "2d"}}],
    }


def signatures(data: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature header of ``data``, top to bottom."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    out = []
    for m in re.finditer(r"^DKIM-Signature:(.*?)(?=^\S)", head + "\r\nEnd: x", re.MULTILINE | re.DOTALL):
        value = re.sub(r"\s+", "", m.group(1))
        out.append(dict(part.split("=", 1) for part in value.split(";") if "=" in part))
    return out


def verify_both(message: bytes, keys: Keys, workdir: Path, dns: DnsmasqPeer) -> None:
    """OpenDKIM passes every signature (RSA and Ed25519); Mail::DKIM passes the RSA one."""
    verdicts = opendkim_verify(message, keys.records, workdir / "opendkim")
    assert sorted((v.selector, v.algorithm, v.result) for v in verdicts) == [
        ("e2026", "ed25519-sha256", "pass"), ("s2026", "rsa-sha256", "pass")], verdicts
    overall, perl = perl_verify(message, dns.nameserver)
    assert overall == "pass"
    assert [(v.selector, v.result) for v in perl if v.algorithm == "rsa-sha256"] == [("s2026", "pass")], perl


# A message as a careless client sends it: bare LF line ends, 8-bit UTF-8 in header and body,
# a long line, a line with only a dot inside, trailing spaces and empty lines at the end.
RAW = ("From: Jörg Müller <joerg@example.org>\n"
       "To: bob@remote.test\n"
       "Subject: Grüße aus Köln\n"
       "Date: Mon, 05 Jan 2026 10:00:00 +0000\n"
       "Message-ID: <dkim-e2e@example.org>\n"
       "MIME-Version: 1.0\n"
       "Content-Type: text/plain; charset=utf-8\n"
       "Content-Transfer-Encoding: 8bit\n"
       "\n"
       "Hallo Bob,   \n"
       "die Rechnung über 12 € liegt bei.\r\n"
       "..\n"
       + "x" * 990 + "\n"
       "\n\n").encode()


def test_signed_at_delivery_survive_intake_normalisation(workdir: Path, keys: Keys, dnsmasq_factory) -> None:
    """Mail handed in over SMTP with bare LFs and 8-bit text leaves with an RSA and an Ed25519 signature
    (relaxed/relaxed, From oversigned) that OpenDKIM and Mail::DKIM verify at the sink."""
    dns = dnsmasq_factory(["local=/example.org/", *txt_records(keys.records)])
    with RecordingSink() as sink:

        async def scenario() -> None:
            async with Harness(workdir, config(workdir, sink, keys.config()), listen=True) as h:
                client = await asyncio.to_thread(RawClient, *h.listen_address)
                try:
                    for line in ("EHLO client.test", "MAIL FROM:<joerg@example.org> BODY=8BITMIME",
                                 "RCPT TO:<bob@remote.test>", "DATA"):
                        code, text = await asyncio.to_thread(client.cmd, line)
                        assert code in (250, 354), text
                    client.send(RAW + b"\r\n.\r\n")
                    code, text = await asyncio.to_thread(client.reply)
                    assert code == 250, text
                finally:
                    client.close()
                await h.deliver()

        asyncio.run(scenario())
        [got] = sink.wait_for(1)
    sigs = signatures(got.data)
    assert [(s["s"], s["a"], s["c"]) for s in sigs] == [
        ("s2026", "rsa-sha256", "relaxed/relaxed"), ("e2026", "ed25519-sha256", "relaxed/relaxed")]
    for s in sigs:
        assert s["d"] == "example.org"
        signed = s["h"].lower().split(":")
        assert signed.count("from") == 2  # oversigned: no second From can be added
        assert "received" not in signed and "subject" in signed and "to" in signed
    assert "Grüße".encode() in got.data and "12 €".encode() in got.data  # 8-bit, unchanged
    verify_both(got.data, keys, workdir, dns)


def test_reports_are_signed_and_signed_mail_is_not_signed_twice(workdir: Path, keys: Keys, dnsmasq_factory) -> None:
    """A bounce mailpipe makes (From MAILER-DAEMON@gw.example.org, sender <>) is signed by example.org's keys
    (a parent domain's key signs its subdomains); a message already signed by s2026 gets only e2026."""
    dns = dnsmasq_factory(["local=/example.org/", *txt_records(keys.records)])
    loaded = load_key(KeySpec(domain="example.org", selector="s2026", key_file=keys.rsa), keys.rsa)
    plain = (b"From: alice@example.org\r\nTo: bob@remote.test\r\nSubject: pre-signed\r\n"
             b"Message-ID: <pre@example.org>\r\n\r\nSigned before it came.\r\n")
    presigned = dkimpy.sign(plain, b"s2026", b"example.org", loaded.private, canonicalize=(b"relaxed", b"relaxed"),
                            include_headers=[b"from", b"to", b"subject"]) + plain
    with RecordingSink() as sink:
        sink.behaviour.rcpt["nobody@remote.test"] = "550 5.1.1 no such user"

        async def scenario() -> None:
            async with Harness(workdir, config(workdir, sink, keys.config())) as h:
                await h.submit("alice@example.org", ["nobody@remote.test"])
                await h.submit("alice@example.org", ["bob@remote.test"], data=presigned)
                await h.deliver()
                await h.deliver()  # the bounce queued by the first attempt

        asyncio.run(scenario())
        got = sink.wait_for(2)
    [report] = [m for m in got if m.mail_from == "<>"]
    [again] = [m for m in got if m.mail_from == "alice@example.org"]
    assert report.rcpt_tos == ["alice@example.org"]
    assert b"From: Mail Delivery System <MAILER-DAEMON@gw.example.org>" in report.data
    assert sorted(s["s"] for s in signatures(report.data)) == ["e2026", "s2026"]
    verify_both(report.data, keys, workdir / "report", dns)
    assert sorted(s["s"] for s in signatures(again.data)) == ["e2026", "s2026"]  # one s2026: the client's
    verdicts = opendkim_verify(again.data, keys.records, workdir / "again")
    assert sorted((v.selector, v.result) for v in verdicts) == [("e2026", "pass"), ("s2026", "pass")]


def test_domain_choice_and_unsigned_mail(workdir: Path, keys: Keys) -> None:
    """sign_by: sender signs with the envelope sender's domain; a domain without keys leaves unsigned."""
    with RecordingSink() as sink:

        async def scenario() -> None:
            async with Harness(workdir, config(workdir, sink, keys.config(sign_by="sender"))) as h:
                data = (b"From: news@other.test\r\nTo: bob@remote.test\r\nSubject: via sender\r\n"
                        b"Message-ID: <s@other.test>\r\n\r\nHi.\r\n")
                await h.submit("bounces@example.org", ["bob@remote.test"], data=data)
                await h.submit("carol@other.test", ["bob@remote.test"], subject="no key")
                await h.deliver()

        asyncio.run(scenario())
        got = sink.wait_for(2)
    by_sender = {m.mail_from: m for m in got}
    assert sorted(s["d"] for s in signatures(by_sender["bounces@example.org"].data)) == ["example.org"] * 2
    assert signatures(by_sender["carol@other.test"].data) == []
    verdicts = opendkim_verify(by_sender["bounces@example.org"].data, keys.records, workdir / "v")
    assert {v.result for v in verdicts} == {"pass"} and len(verdicts) == 2


def test_unusable_key_keeps_mail_waiting(workdir: Path, keys: Keys) -> None:
    """A key file that cannot be read: the mail of its domain waits (451) with one dkim.key_unusable event,
    and goes out signed once the file is back."""
    broken = workdir / "missing.key"
    entry = {"dkim": {"keys": [{"domain": "example.org", "selector": "s2026", "key_file": str(broken)}]}}
    with RecordingSink() as sink:

        async def scenario() -> tuple[dict[str, str], list[Any], Any]:
            async with Harness(workdir, config(workdir, sink, entry)) as h:
                ids = [await h.submit("alice@example.org", [f"r{i}@remote.test"]) for i in range(2)]
                await h.deliver()
                states = {**await h.states(ids[0]), **await h.states(ids[1])}
                events = await h.events("dkim.key_unusable")
                attempt = (await h.last_attempts(ids[0]))["r0@remote.test"]
                broken.write_bytes(keys.rsa.read_bytes())
                h.clock.advance(601)
                await h.deliver()
                assert await h.states(ids[0]) == {"r0@remote.test": "delivered"}
                return states, events, attempt

        states, events, attempt = asyncio.run(scenario())
        got = sink.wait_for(2)
    assert states == {"r0@remote.test": "deferred", "r1@remote.test": "deferred"}
    assert (attempt.code, attempt.enhanced) == (451, "4.7.0")
    assert "DKIM key s2026._domainkey.example.org" in attempt.text
    assert len(events) == 1 and "cannot be read" in events[0].text
    assert all(len(signatures(m.data)) == 1 for m in got)
