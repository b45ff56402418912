"""What the policy stages cost: ``rules`` and ``clamav`` on 4 KB and 100 KB mail.

    python bench/policy_cost.py                 # 300 messages per figure (~2 min)
    python bench/policy_cost.py --messages 100  # quicker, noisier

Two views, each on a 4 KB message (text) and a 100 KB one (text and a 75 KB PDF attachment):

1. **accept hook, in process**: the time one stage's ``accept`` takes per message, called
   one message after another (median and 95th percentile): ``rules`` with the rule set of
   issue 19's example (attachment names, size, sender, a Subject pattern with two actions),
   ``clamav`` through clamd's Unix socket and through TCP.
2. **intake through ``pipeline serve``**: messages per second that 8 SMTP sessions get
   accepted (250 after the durable commit) with the chain empty, ``rules``, ``clamav``, and
   both. Delivery is held (a schedule that never opens) so only the intake is measured.

clamd is a private one (tests/peers/clamd.py: Debian's clamav-daemon with the EICAR test
signature only, so its scan time is that of a small database; a full signature database
costs clamd more per message). Writes bench/RESULTS-policy.md and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from tests.peers.clamd import ClamdPeer  # the same private clamd the tests use
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port

from .common import BENCH_DIR
from .machine import loadavg

RULES: list[dict[str, Any]] = [
    {"name": "no executables", "match": {"attachment_name": r"(?i)\.(exe|scr|js|vbs|bat)$"},
     "action": {"reject": "554 5.7.1 executable attachments are not accepted"}},
    {"name": "big mail via the second ISP", "match": {"size_over": "10M"}, "action": {"route_via": "smarthost-big"}},
    {"match": {"sender": r"(?i)@ex-employee\.example$"}, "action": "hold"},
    {"match": {"header": {"Subject": r"(?i)\[confidential\]"}},
     "action": [{"add_header": {"X-Classification": "confidential"}}, {"bcc": "audit@corp.local"}]},
]
SIZES = {"4 KB": 4 * 1024, "100 KB": 100 * 1024}


def message(size: int) -> bytes:
    """A message of about ``size`` bytes: text only up to 8 KB, text and a PDF attachment above."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "alice@corp.example", "bob@remote.example", "Quarterly report"
    text_size = size if size <= 8192 else 2048
    m.set_content(("All figures are in the attachment. " * 400)[:text_size])
    if size > 8192:
        pdf = b"%PDF-1.4\n" + os.urandom((size - 8192) * 3 // 4)
        m.add_attachment(pdf, maintype="application", subtype="pdf", filename="report.pdf")
    return m.as_bytes(policy=SMTP)


# -- 1. the accept hook in process -------------------------------------------------------------------


async def hook_times(plugin: Any, data: bytes, count: int) -> list[float]:
    from mailpipe.core.message import Message, Recipient, SessionInfo

    session = SessionInfo(peer="127.0.0.1", helo="bench")
    times = []
    for i in range(count):
        m = Message(f"bench{i}", "alice@corp.example", [Recipient("bob@remote.example")], time.time(),
                    session=session)
        m.set_body(data)
        started = time.perf_counter()
        await plugin.accept(message=m, session=session)
        times.append(time.perf_counter() - started)
    return times


def make_plugin(name: str, options: dict[str, Any], workdir: Path) -> Any:
    from mailpipe.core.plugin import PluginContext
    from mailpipe.core.registry import load_plugin
    from mailpipe.core.settings import Settings

    settings = Settings.model_validate({"state_dir": str(workdir), "chain": [{"smarthost": {"name": "smarthost-big"}}]})
    cls = load_plugin(name)
    opts = cls.Options.model_validate(options, context={"settings": settings})
    return cls(opts, PluginContext(settings, workdir), instance_name=name)


def stage_costs(clamd: ClamdPeer, count: int, workdir: Path) -> list[dict[str, Any]]:
    stages = {
        "rules (issue 19's example set)": make_plugin("rules", {"rules": RULES}, workdir),
        "clamav via Unix socket": make_plugin("clamav", {"socket": clamd.socket_path}, workdir),
        "clamav via TCP": make_plugin("clamav", {"address": clamd.address}, workdir),
    }
    rows = []
    for label, size in SIZES.items():
        data = message(size)
        for stage, plugin in stages.items():
            times = asyncio.run(hook_times(plugin, data, count))
            times.sort()
            rows.append({"size": label, "stage": stage, "median_ms": statistics.median(times) * 1000,
                         "p95_ms": times[int(len(times) * 0.95) - 1] * 1000})
            print(f"  {label:7} {stage:32} median {rows[-1]['median_ms']:7.2f} ms  p95 {rows[-1]['p95_ms']:7.2f} ms",
                  flush=True)
    return rows


# -- 2. intake rate through pipeline serve ---------------------------------------------------------------


def serve(workdir: Path, chain: list[dict[str, Any]]) -> MailpipeProcess:
    """``pipeline serve`` with ``chain`` before a smarthost, delivery held: the intake alone is measured."""
    config = {"hostname": "bench.policy.test", "state_dir": str(workdir / "state"),
              "listen": [f"127.0.0.1:{free_port()}"], "log": {"level": "warning"},
              "delivery": {"send_immediately": False, "schedule": ["0 0 1 1 *"]},  # hold delivery: intake only
              "chain": [*chain, {"smarthost": {"server": "127.0.0.1:9", "tls": "none"}}]}
    return MailpipeProcess(workdir, config).start(timeout=30)


def intake_rate(port: int, data: bytes, count: int, sessions: int) -> float:
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as c:
                for _ in range(n):
                    c.sendmail("alice@corp.example", ["bob@remote.example"], data)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    per = [count // sessions + (1 if i < count % sessions else 0) for i in range(sessions)]
    threads = [threading.Thread(target=client, args=(n,)) for n in per]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    took = time.monotonic() - started
    if errors:
        raise RuntimeError(f"{len(errors)} session(s) failed: {errors[0]}")
    return count / took


def intake_rates(clamd: ClamdPeer, count: int, sessions: int, workdir: Path) -> list[dict[str, Any]]:
    chains = {
        "none": [],
        "rules": [{"rules": {"rules": RULES}}],
        "clamav (socket)": [{"clamav": {"socket": clamd.socket_path}}],
        "rules + clamav": [{"rules": {"rules": RULES}}, {"clamav": {"socket": clamd.socket_path}}],
    }
    chains["rules"][0]["rules"]["rules"][1]["action"] = "stop"  # no smarthost-big in this chain
    chains["rules + clamav"][0]["rules"]["rules"][1]["action"] = "stop"
    rows = []
    for label, size in SIZES.items():
        data = message(size)
        for name, chain in chains.items():
            relay = serve(workdir / f"{name}-{size}".replace(" ", "_"), chain)
            try:
                rate = intake_rate(relay.address[1], data, count, sessions)
            finally:
                relay.stop()
            rows.append({"size": label, "chain": name, "rate": rate})
            print(f"  {label:7} chain {name:16} {rate:8.1f} msg/s", flush=True)
    return rows


def markdown(stage_rows: list[dict[str, Any]], rate_rows: list[dict[str, Any]], args: argparse.Namespace,
             load_before: str, load_after: str) -> str:
    out = ["# Policy stages: what rules and clamav cost", "",
           f"Written by `bench/policy_cost.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
           f"{args.messages} messages per figure, {args.sessions} sessions for the intake rates; "
           f"{os.cpu_count()} cores; load average {load_before} before, {load_after} after "
           "(other work on the machine makes figures noisy: compare rows, not runs). "
           "See the script's docstring for what is measured.", "",
           "## The accept hook, in process (per message)", "",
           "| message | stage | median | p95 |", "|---|---|---|---|"]
    out += [f"| {r['size']} | {r['stage']} | {r['median_ms']:.2f} ms | {r['p95_ms']:.2f} ms |" for r in stage_rows]
    out += ["", f"## Intake through `pipeline serve` ({args.sessions} sessions, 250 after the durable commit)", "",
            "| message | chain | messages/s | vs. none |", "|---|---|---|---|"]
    base = {r["size"]: r["rate"] for r in rate_rows if r["chain"] == "none"}
    out += [f"| {r['size']} | {r['chain']} | {r['rate']:,.0f} | {r['rate'] / base[r['size']]:.2f}× |"
            for r in rate_rows]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS-policy.md")
    args = parser.parse_args()
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="mailpipe-policy-bench-") as tmp:
        workdir = Path(tmp)
        with ClamdPeer(workdir / "clamd") as clamd:
            print("accept hook, in process:", flush=True)
            stage_rows = stage_costs(clamd, args.messages, workdir)
            print(f"intake through pipeline serve ({args.sessions} sessions):", flush=True)
            rate_rows = intake_rates(clamd, args.messages, args.sessions, workdir)
    text = markdown(stage_rows, rate_rows, args, load_before, loadavg())
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
