"""The supervisor: ``pipeline serve`` with ``workers: N`` (N ≥ 2) as one master and N worker processes.

The master serves no mail. It checks that every ``listen`` address is free, starts worker 1
and waits until it is prepared (queue open, plugins started; a worker that fails to start
ends ``serve`` with that worker's error and exit status, as one process would), then starts
the others; once all are prepared it tells them to listen (``link.StartLink``), so they open
their listeners together. Every worker is a full gateway (intake, queue, scheduler) that
listens on the same addresses (``SO_REUSEPORT``: the kernel spreads the connections over the
workers). Then the master:

- **restarts a worker that died**, with the same number (so it reopens its own queue file and
  recovers what the dead process had leased); one that keeps dying right after its start is
  restarted after a growing pause (1 s, 2 s, ... up to 30 s);
- passes **SIGTERM/SIGINT** to every worker (each drains as one process does: stops accepting,
  lets deliveries in flight finish within ``delivery.shutdown_grace``) and exits 0 once all
  have ended; **SIGHUP** to every worker (each reloads the configuration file);
- owns the **control socket** (``<state_dir>/control.sock``): ``pipeline queue retry`` and the
  console's "retry" wake every worker (SIGUSR1), the console's Save reloads every other worker.

A worker dies with its master (``link.end_with_supervisor``): SIGKILL of the master stops all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config import LoadedConfig
from ..control import bind, socket_path
from ..errors import ConfigError
from ..settings import worker_count
from .link import RELOAD, WAKE, parse
from .peers import workers_dir
from .slot import WorkerSlot

log = logging.getLogger("mailpipe.workers")

QUICK_DEATH = 10.0
"""A worker that dies within this many seconds of its start is restarted after a pause."""
MAX_PAUSE = 30.0
METRICS_DIR = "metrics"


@dataclass
class Worker:
    """One worker process as the supervisor sees it."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    prepared: asyncio.Future[bool] | None = None
    ready: asyncio.Future[bool] | None = None
    go: int | None = None  # the pipe on which the worker hears "go"
    quick_deaths: int = 0
    restart: asyncio.TimerHandle | None = None
    watchers: list[int] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def is_ready(self) -> bool:
        return _true(self.ready)

    def say_go(self) -> None:
        """Tell the worker to open its listeners (once)."""
        if self.go is not None:
            with contextlib.suppress(OSError):
                os.write(self.go, b"go\n")
            with contextlib.suppress(OSError):
                os.close(self.go)
            self.go = None


def _true(future: asyncio.Future[bool] | None) -> bool:
    return future is not None and future.done() and not future.cancelled() and future.result()


def _settle(future: asyncio.Future[bool] | None, value: bool) -> None:
    if future is not None and not future.done():
        future.set_result(value)


def describe(status: int) -> str:
    """A worker's exit status in words: ``exit status 1``, ``killed by SIGKILL``."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


async def check_listen(config: LoadedConfig) -> None:
    """ConfigError (as one process says it) when a ``listen`` address cannot be bound.

    The workers bind with ``SO_REUSEPORT``, which would let them share a port with another
    program's socket that also set it; this check, without it, refuses a port already in use.
    It binds without listening, so no client can connect before a worker serves.
    """
    loop = asyncio.get_running_loop()
    for spec in config.settings.listen:
        try:
            infos = await loop.getaddrinfo(spec.host or None, spec.port, type=socket.SOCK_STREAM,
                                           flags=socket.AI_PASSIVE)
            for family, kind, proto, _name, address in infos:
                with socket.socket(family, kind, proto) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"listen {spec.address}: cannot listen: {exc.strerror or exc}") from exc


class Supervisor:
    """Runs ``count`` workers of ``config`` until SIGTERM or SIGINT; ``run`` returns the exit status.

    ``command`` is the worker's command line without its worker arguments (``--worker``,
    ``--link-fds``), e.g. ``[python, pipeline, "serve", "-c", FILE]``.
    """

    def __init__(self, config: LoadedConfig, count: int, command: list[str],
                 on_started: Callable[[], None] | None = None) -> None:
        self.config = config
        self.count = count
        self.command = command
        self.on_started = on_started
        self.state_dir = config.settings.state_dir
        self.workers = [Worker(i) for i in range(1, count + 1)]
        self._stopping = asyncio.Event()
        self._ended = asyncio.Event()
        self._serving = False  # every worker started once: a death from now on is restarted
        self._control: asyncio.DatagramTransport | None = None

    # -- life ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Start every worker, supervise them until asked to stop, stop them; the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload_all)
        await check_listen(self.config)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        metrics = workers_dir(self.state_dir) / METRICS_DIR
        shutil.rmtree(metrics, ignore_errors=True)  # multi-process Prometheus: counters of this run only
        metrics.mkdir(parents=True, exist_ok=True)
        self._control = await self._listen_control()
        try:
            status = await self._start_all()
            if status is not None:
                return status
            self._serving = True
            log.info("mailpipe serving with %d workers (pids %s)", self.count,
                     ", ".join(str(w.proc.pid) for w in self.workers if w.proc is not None))
            if self.on_started is not None:
                self.on_started()
            await self._stopping.wait()
            return 0
        finally:
            await self._stop_all()
            if self._control is not None:
                self._control.close()
                with contextlib.suppress(FileNotFoundError):
                    socket_path(self.state_dir).unlink()

    async def _start_all(self) -> int | None:
        """Worker 1, then the others, then all listen; None when all do, else the exit status of one that failed."""
        first = self.workers[0]
        self._spawn(first)
        if not await self._reached(first, "prepared"):
            return self._start_failure(first)
        rest = self.workers[1:]
        for worker in rest:
            self._spawn(worker)
        for worker in rest:
            if not await self._reached(worker, "prepared"):
                return self._start_failure(worker)
        for worker in self.workers:
            worker.say_go()
        for worker in self.workers:
            if not await self._reached(worker, "ready"):
                return self._start_failure(worker)
        return None

    async def _reached(self, worker: Worker, stage: str) -> bool:
        """Wait until ``worker`` is ``prepared`` or ``ready`` (True), exits or the supervisor must stop (False)."""
        future = worker.prepared if stage == "prepared" else worker.ready
        assert future is not None
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([future, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        return _true(future)

    def _start_failure(self, worker: Worker) -> int:
        if self._stopping.is_set():
            return 0
        proc = worker.proc
        status = proc.returncode if proc is not None and proc.returncode is not None else 1
        log.debug("worker %d could not start (%s): stopping", worker.index, describe(status))  # it said why
        self._stopping.set()
        return status if status > 0 else 1

    def request_stop(self) -> None:
        """SIGTERM or SIGINT: stop every worker (each drains), then exit."""
        if not self._stopping.is_set():
            log.info("stopping %d workers", sum(w.alive for w in self.workers))
        self._stopping.set()

    async def _stop_all(self) -> None:
        for worker in self.workers:
            if worker.restart is not None:
                worker.restart.cancel()
            self._signal(worker, signal.SIGTERM, only_ready=False)
        while any(w.alive for w in self.workers):
            self._ended.clear()
            if any(w.alive for w in self.workers):
                await self._ended.wait()

    # -- workers ------------------------------------------------------------------------------

    def _spawn(self, worker: Worker, restarted_after: str | None = None) -> None:
        """Start ``worker``'s process; its exit and its ``ready`` are watched on the event loop."""
        loop = asyncio.get_running_loop()
        worker.restart = None
        tell_r, tell_w = os.pipe()  # the worker tells: prepared, ready
        hear_r, hear_w = os.pipe()  # the worker hears: go
        slot = WorkerSlot(worker.index, self.count, os.getpid())
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(workers_dir(self.state_dir) / METRICS_DIR)}
        if restarted_after:
            env["MAILPIPE_WORKER_RESTARTED"] = restarted_after
        else:
            env.pop("MAILPIPE_WORKER_RESTARTED", None)
        worker.prepared, worker.ready = loop.create_future(), loop.create_future()
        try:
            proc = subprocess.Popen(
                [*self.command, "--worker", slot.argument(), "--link-fds", f"{tell_w},{hear_r}"],
                pass_fds=(tell_w, hear_r), env=env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            os.close(tell_r)
            os.close(hear_w)
            log.error("cannot start worker %d: %s", worker.index, exc)
            _settle(worker.prepared, False)
            _settle(worker.ready, False)
            if self._serving:
                self._schedule_restart(worker, f"it could not be started ({exc})")
            return
        finally:
            os.close(tell_w)  # the worker has its own copies
            os.close(hear_r)
        worker.proc = proc
        worker.started = time.monotonic()
        worker.go = hear_w
        pidfd = os.pidfd_open(proc.pid)
        worker.watchers = [pidfd, tell_r]
        loop.add_reader(tell_r, self._on_tell, worker, tell_r)
        loop.add_reader(pidfd, self._on_exit, worker, proc, pidfd)

    def _on_tell(self, worker: Worker, fd: int) -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if b"prepared" in data:
            _settle(worker.prepared, True)
            if self._serving:  # a restarted worker listens as soon as it is prepared
                worker.say_go()
        if b"ready" in data:
            _settle(worker.ready, True)
            log.debug("worker %d (pid %s) listens", worker.index, worker.proc.pid if worker.proc else "?")
        if not data or b"ready" in data:
            self._unwatch(worker, fd)

    def _unwatch(self, worker: Worker, fd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        if fd in worker.watchers:
            worker.watchers.remove(fd)

    def _on_exit(self, worker: Worker, proc: subprocess.Popen[bytes], pidfd: int) -> None:
        self._unwatch(worker, pidfd)
        status = proc.wait()
        for fd in list(worker.watchers):  # the start-up pipe, if it never said ready
            self._unwatch(worker, fd)
        _settle(worker.prepared, False)
        _settle(worker.ready, False)
        if worker.go is not None:
            with contextlib.suppress(OSError):
                os.close(worker.go)
            worker.go = None
        self._ended.set()
        if self._stopping.is_set():
            log.info("worker %d (pid %d) ended (%s)", worker.index, proc.pid, describe(status))
            return
        if not self._serving:
            return  # a start failure: _start_all ends the supervisor
        lived = time.monotonic() - worker.started
        log.error("worker %d (pid %d) died (%s) after %.0fs: starting it again", worker.index, proc.pid,
                  describe(status), lived)
        self._schedule_restart(worker, f"worker {worker.index} (pid {proc.pid}) died ({describe(status)})",
                               quick=lived < QUICK_DEATH)

    def _schedule_restart(self, worker: Worker, why: str, *, quick: bool = True) -> None:
        worker.quick_deaths = worker.quick_deaths + 1 if quick else 0
        pause = 0.0 if worker.quick_deaths <= 1 else min(MAX_PAUSE, 2.0 ** (worker.quick_deaths - 2))
        if pause:
            log.warning("worker %d keeps dying: next start in %.0fs", worker.index, pause)
        worker.restart = asyncio.get_running_loop().call_later(pause, self._spawn, worker, why)

    def _signal(self, worker: Worker, sig: signal.Signals, *, only_ready: bool = True) -> None:
        """Send ``sig`` to ``worker`` (by default only once it listens: before, its handlers are not set)."""
        if not worker.alive or (only_ready and not worker.is_ready):
            return
        assert worker.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.proc.pid, sig)

    # -- what the workers and the CLI ask ------------------------------------------------------

    def wake_all(self) -> None:
        """``pipeline queue retry`` or a worker's "retry now": every worker starts a delivery run (SIGUSR1)."""
        for worker in self.workers:
            self._signal(worker, signal.SIGUSR1)

    def reload_all(self, but: int | None = None) -> None:
        """SIGHUP (or a worker's Save, ``but`` its pid): every other worker reloads the configuration file."""
        if but is None:
            asyncio.get_running_loop().run_in_executor(None, self._warn_workers_changed)
        for worker in self.workers:
            if worker.proc is not None and worker.proc.pid == but:
                continue
            self._signal(worker, signal.SIGHUP)

    def _warn_workers_changed(self) -> None:
        from ..config import EMBEDDED, load_config

        if self.config.source == EMBEDDED:
            return
        try:
            count = worker_count(load_config(self.config.source).settings.workers)
        except (ConfigError, ValueError):
            return  # the workers report the refused file themselves
        if count != self.count:
            log.warning("workers: %d in %s, %d running: a change of workers takes effect at the next start",
                        count, self.config.source, self.count)

    async def _listen_control(self) -> asyncio.DatagramTransport | None:
        return await bind(self.state_dir, self._on_control, "the workers")

    def _on_control(self, data: bytes) -> None:
        """A datagram on the control socket: ``run`` wakes every worker, ``reload PID`` reloads the others."""
        word, pid = parse(data)
        if word == WAKE:
            self.wake_all()
        elif word == RELOAD:
            self.reload_all(but=pid)
