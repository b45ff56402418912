"""The rules plugin at the end of DATA: reject, hold, drop, redirect, bcc and header changes, on a real intake.

Each test runs the real gateway (intake on loopback, sqlite queue, smarthost to a recording
sink); mail goes in over SMTP and out to the sink; an administrator's release is the CLI's.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.peers.harness import Harness
from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import base_config, mail, send, smarthost

ENCODED = b"Subject: =?utf-8?q?=5BConfidential=5D_plans?="  # "[Confidential] plans" as an RFC 2047 word
RULES: list[dict[str, Any]] = [
    {"name": "no executables", "match": {"attachment_name": r"(?i)\.(exe|scr|js|vbs|bat)$"},
     "action": {"reject": "554 5.7.1 executable attachments are not accepted"}},
    {"name": "ex-employees", "match": {"sender": r"(?i)@ex-employee\.example$"}, "action": "hold"},
    {"name": "confidential", "match": {"header": {"Subject": r"(?i)\[confidential\]"}},
     "action": [{"add_header": {"X-Classification": "confidential"}}, {"bcc": "audit@corp.example"}]},
    {"name": "newsletters", "match": {"all": [{"header": {"List-Id": "."}}, {"not": {"authenticated": True}}]},
     "action": {"drop": "newsletters are not relayed"}},
    {"name": "old address", "match": {"recipient": r"^sales@old\.example$"},
     "action": {"redirect": "sales@new.example"}},
    {"name": "internal", "match": {"any": [{"content_type": "^text/html$"}, {"size_over": "200K"}],
                                   "client": ["127.0.0.0/8", "::1"]},
     "action": [{"remove_header": "X-Internal-Id"}, {"add_header": {"X-Checked": "html or big"}}]},
    {"name": "catch-all stop", "match": {"header": {"X-Stop": "yes"}}, "action": "stop"},
    {"name": "after stop", "match": {}, "action": {"add_header": {"X-Reached": "end"}}},
]


async def _with_gateway(workdir: Path, sink: RecordingSink, scenario: Any, rules: list[dict[str, Any]] = RULES) -> None:
    port = free_port()
    config = base_config(workdir, port, [{"rules": {"rules": rules}}, smarthost(sink.port)])
    async with Harness(workdir, config, listen=True) as h:
        await scenario(h, port)


def test_reject_hold_drop(workdir: Path) -> None:
    async def scenario(h: Harness, port: int) -> None:
        exe = mail(attachments=[("Setup.EXE", b"MZ\x90\x00", "application/x-msdownload")])
        code, text = await asyncio.to_thread(send, port, exe)
        assert (code, text) == (554, "5.7.1 executable attachments are not accepted")

        code, _ = await asyncio.to_thread(send, port, mail(sender="joe@ex-employee.example"),
                                          "joe@ex-employee.example")
        assert code == 250
        held = await h.queued(state="held")
        assert len(held) == 1
        assert (await h.attributes(held[0].id))["held"] == "rule 'ex-employees'"
        assert [e.kind for e in await h.events("message.held")] == ["message.held"]

        code, _ = await asyncio.to_thread(send, port, mail(headers={"List-Id": "<news.corp.example>"}))
        assert code == 250  # accepted and discarded: the sender learns nothing
        assert [e.text for e in await h.events("message.discarded")][0].endswith("newsletters are not relayed")

        await h.deliver()
        assert sink.messages == []  # nothing was deliverable: one refused, one held, one dropped
        assert len(await h.queued()) == 1

        mid = held[0].id  # an administrator releases it: it goes out
        res = await asyncio.to_thread(run_pipeline, h.config_path, "queue", "release", mid)
        assert "1 recipient(s) released" in res.stdout, res.stdout
        h.clock.set(time.time() + 1)  # the CLI made it due at the wall clock's now
        await h.deliver()
        assert [m.mail_from for m in sink.messages] == ["joe@ex-employee.example"]

    with RecordingSink() as sink:
        asyncio.run(_with_gateway(workdir, sink, scenario))


def test_envelope_and_header_changes(workdir: Path) -> None:
    async def scenario(h: Harness, port: int) -> None:
        confidential = mail(subject="plans").replace(b"Subject: plans", ENCODED)  # decoded before matching
        assert (await asyncio.to_thread(send, port, confidential))[0] == 250
        assert (await asyncio.to_thread(send, port, mail(), "alice@corp.example", ["sales@old.example"]))[0] == 250
        html = mail(html=True, headers={"X-Internal-Id": "4711", "X-Stop": "yes"})
        assert (await asyncio.to_thread(send, port, html))[0] == 250
        await h.deliver()
        by_subject: dict[str, Any] = {}
        for m in sink.messages:
            subject = next(line for line in m.data.split(b"\r\n") if line.startswith(b"Subject:"))
            by_subject.setdefault(subject.decode(), []).append(m)
        conf = by_subject[ENCODED.decode()]
        assert sorted(r for m in conf for r in m.rcpt_tos) == ["audit@corp.example", "bob@remote.example"]
        assert all(b"\r\nX-Classification: confidential\r\n" in m.data for m in conf)
        assert all(b"X-Reached: end" in m.data for m in conf)
        [redirected] = [m for m in sink.messages if "sales@new.example" in m.rcpt_tos]
        assert redirected.rcpt_tos == ["sales@new.example"]
        [internal] = by_subject["Subject: Quarterly report"][-1:]
        assert b"X-Internal-Id" not in internal.data and b"X-Checked: html or big" in internal.data
        assert b"X-Reached" not in internal.data  # "stop" ended the walk before the last rule

    with RecordingSink() as sink:
        asyncio.run(_with_gateway(workdir, sink, scenario))


@pytest.mark.parametrize("rule, expected", [
    ({"match": {"size_over": "100K"}, "action": {"reject": "552 5.3.4 too big for this policy"}}, 552),
    ({"match": {"size_under": "1M"}, "action": {"reject": "450 4.7.1 try again later"}}, 450),
    ({"match": {"client": "192.0.2.0/24"}, "action": {"reject": "554 5.7.1 never"}}, 250),
    ({"match": {"auth_user": "."}, "action": {"reject": "554 5.7.1 never"}}, 250),
    ({"match": {"authenticated": False, "content_type": "^application/pdf$"},
      "action": {"reject": "554 5.7.1 no PDF from outside"}}, 554),
])
def test_each_match(workdir: Path, rule: dict[str, Any], expected: int) -> None:
    async def scenario(h: Harness, port: int) -> None:
        data = mail(attachments=[("report.pdf", b"%PDF-1.4 " + b"x" * 150_000, "application/pdf")])
        code, _ = await asyncio.to_thread(send, port, data)
        assert code == expected

    with RecordingSink() as sink:
        asyncio.run(_with_gateway(workdir, sink, scenario, [rule]))
