"""py-spy around a running ``pipeline serve``, and a plain-text summary of what it recorded.

:class:`PySpy` runs ``py-spy record --format speedscope --threads --nonblocking``
on a process until stopped (SIGINT makes py-spy write its file). The
speedscope JSON opens in https://www.speedscope.app (drag and drop) and
:func:`summarise` turns it into top lists: samples per thread, self time by
function, inclusive time by function, and self time by package (aiosmtpd,
asyncio, aiosmtplib, sqlite, mailpipe.core, ...).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.peers.service import Service, stop_popen

# Frames every sample of a thread passes through: left out of the inclusive list.
PLUMBING = ("thread (", "process ", "<module> ", "BaseEventLoop.run_forever ", "BaseEventLoop._run_once ",
            "BaseEventLoop.run_until_complete ", "Runner.run ", "run (stdlib.asyncio)", "Handle._run ",
            "Thread._bootstrap", "Thread.run ", "DbWorker._run ")


def py_spy_path() -> str | None:
    """Where py-spy is installed: on PATH or next to this Python (a venv's bin); None: it is not."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


class PySpy(Service):
    """``py-spy record`` of process ``pid`` into ``out`` (speedscope JSON) until :meth:`stop`."""

    def __init__(self, pid: int, out: Path, *, rate: int = 100) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = out.with_suffix(".log")

    def start(self) -> PySpy:
        exe = py_spy_path()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "speedscope",
                 "--threads", "--nonblocking", "--output", str(self.out)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._started("py-spy")
        return self

    def stop(self, timeout: float = 30) -> bool:
        """SIGINT (py-spy then writes its output); True if the file was written."""
        if self.proc is None:
            return False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_popen(self.proc, timeout=2)
        self._stopped()
        deadline = time.monotonic() + 5
        while not self.out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.out.exists()


def _package(file: str) -> str:
    f = file.replace("\\", "/")
    for marker, name in (("/mailpipe/core/", "mailpipe.core"), ("/main/core/", "mailpipe.core"),
                         ("/main/plugins/", "mailpipe.plugins"), ("/mailpipe/plugins/", "mailpipe.plugins")):
        if marker in f:
            rest = f.split(marker, 1)[1]
            return f"{name}.{rest.split('/')[0].removesuffix('.py')}"
    if "site-packages/" in f:
        return f.split("site-packages/", 1)[1].split("/")[0].removesuffix(".py")
    if "/lib/python3" in f:
        part = f.split("/lib/python3", 1)[1].split("/", 1)[-1]
        return "stdlib." + part.split("/")[0].removesuffix(".py")
    return f or "?"


def summarise(path: Path, top: int = 25) -> str:
    """A plain-text report of one speedscope file written by py-spy."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    names = [f"{fr.get('name', '?')} ({Path(fr.get('file', '?')).name}:{fr.get('line', '')})" for fr in frames]
    funcs = [f"{fr.get('name', '?')} ({_package(fr.get('file', ''))})" for fr in frames]
    pkgs = [_package(fr.get("file", "")) for fr in frames]
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    self_line: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for prof in data["profiles"]:
        weights = prof.get("weights") or [1] * len(prof["samples"])
        for stack, w in zip(prof["samples"], weights, strict=False):
            total += w
            threads[prof.get("name", "?")] += w
            if not stack:
                continue
            leaf = stack[-1]
            self_fn[funcs[leaf]] += w
            self_pkg[pkgs[leaf]] += w
            self_line[names[leaf]] += w
            for fn in {funcs[i] for i in stack}:
                if not fn.startswith(PLUMBING) and "(click)" not in fn and "(mailpipe.core.cli)" not in fn:
                    incl_fn[fn] += w
    if not total:
        return f"{path.name}: no samples\n"

    def block(title: str, counter: Counter[str], n: int = top) -> str:
        rows = [f"  {100 * c / total:5.1f}%  {k}" for k, c in counter.most_common(n)]
        return f"{title}\n" + "\n".join(rows) + "\n"

    return (f"== {path.name}: {total:.1f} s of samples (py-spy at 100 Hz; threads waiting idle are not "
            "counted; % of all threads' samples)\n"
            + block("-- samples per thread", threads, 10)
            + block("-- self time by package", self_pkg, 15)
            + block("-- self time by function", self_fn)
            + block("-- inclusive time by function", incl_fn)
            + block("-- self time by line", self_line, 15))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarise(Path(arg)))
