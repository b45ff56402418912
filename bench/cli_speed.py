"""How long the ``pipeline`` commands an administrator types take, measured from outside with farm-bench.

    python bench/cli_speed.py              # each command 15 times, medians against the targets
    python bench/cli_speed.py --runs 30 --messages 200

A throw-away configuration and queue (``--messages`` messages, a third of them held) in a temp
folder; every command is a whole ``pipeline`` process, start-up and imports included, timed by
``farm-bench`` (on PATH) which prints min/median/max wall seconds. The targets of issue 15:
``--help`` and ``--version`` at most 0.100 s, the read-only queue commands (``queue list``,
``queue show``, ``log``, ``events``, ``stats``) at most 0.200 s, medians on this machine. The
load average is printed before and after: on a busy machine the figures are not worth quoting.
Exit status: 0 every target met, 1 a target missed, 2 farm-bench is missing or a command failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mailpipe.core.config import load_config
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient, SessionInfo
from mailpipe.core.runtime import open_queue

PIPELINE = str(Path(sys.executable).with_name("pipeline"))
QUICK, QUEUE = 0.100, 0.200


def prepare(folder: Path, messages: int) -> tuple[Path, str]:
    """A configuration and a queue with ``messages`` messages; the path and one message ID."""
    path = folder / "mailpipe.yaml"
    path.write_text(yaml.safe_dump({
        "hostname": "bench.test", "state_dir": str(folder / "state"), "listen": ["127.0.0.1:2525"],
        "chain": [{"smarthost": {"server": "smtp.isp.test", "port": 587}}, {"retry": {"every": "15m"}}]}))

    async def fill() -> str:
        queue = await open_queue(load_config(path, only_queue=True))
        try:
            ids = []
            for n in range(messages):
                data = f"Subject: bench {n}\r\n\r\nbody\r\n".encode()
                message = Message(new_queue_id(), "alice@example.org", [Recipient(f"r{n}@example.net")],
                                  time.time(), size=len(data), session=SessionInfo("127.0.0.1", "bench.test"))
                await queue.store(message, data)
                ids.append(message.id)
            await queue.hold(ids[::3])
            return ids[0]
        finally:
            await queue.close()

    return path, asyncio.run(fill())


def medians(args: list[str], runs: int) -> tuple[float, float]:
    """farm-bench's median wall and CPU (user + system) seconds of ``pipeline ARGS``."""
    res = subprocess.run(["farm-bench", "-n", str(runs), "--", PIPELINE, *args], capture_output=True, text=True,
                         timeout=600)
    out = res.stdout + res.stderr
    found = [re.search(rf"^A {name} s\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out, re.M) for name in ("wall", "cpu")]
    if not all(found):
        raise RuntimeError(f"farm-bench said:\n{out}")
    wall, cpu = (float(m.group(2)) for m in found if m)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (farm-bench -n)")
    parser.add_argument("--messages", type=int, default=100, help="messages in the queue")
    opts = parser.parse_args()
    if shutil.which("farm-bench") is None:
        print("farm-bench is not on PATH", file=sys.stderr)
        return 2
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        config, mid = prepare(Path(tmp), opts.messages)
        c = ["-c", str(config)]
        commands = [(["--help"], QUICK), (["--version"], QUICK), (["queue", "list", *c], QUEUE),
                    (["queue", "show", mid, *c], QUEUE), (["log", *c], QUEUE), (["events", *c], QUEUE),
                    (["stats", *c], QUEUE), (["queue", "cat", mid, *c], QUEUE)]
        for args, _ in commands:
            if subprocess.run([PIPELINE, *args], capture_output=True, timeout=60).returncode != 0:
                print(f"pipeline {' '.join(args)} failed", file=sys.stderr)
                return 2
        missed = 0
        print(f"{'command (median seconds)':32} {'wall':>7} {'cpu':>7} {'target':>7}")
        for args, target in commands:
            took, cpu = medians(args, opts.runs)
            ok = took <= target
            missed += not ok
            shown = " ".join({str(config): "FILE", mid: "ID"}.get(a, a) for a in args)
            print(f"pipeline {shown:23} {took:7.3f} {cpu:7.3f} {target:7.3f} {'ok' if ok else 'MISSED'}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
