"""What every peer the tests and the bench start has in common: it is stopped, at exit at the latest.

A :class:`Service` is started with :meth:`~Service.start` (or ``with``) and stopped
with :meth:`~Service.stop`; while it runs it is listed in :data:`RUNNING`, whose
stops run at interpreter exit, so a test run or a bench run that ends early
(an exception, Ctrl-C) leaves no server behind. :func:`stop_popen` ends a child
process started with :class:`subprocess.Popen`: SIGTERM, then SIGKILL after a bound.
"""

from __future__ import annotations

import atexit
import contextlib
import subprocess
import sys
from collections.abc import Callable
from typing import Self


class StopRegistry:
    """Stop callbacks of what was started and is not stopped yet; :meth:`run_all` runs them, newest first."""

    def __init__(self) -> None:
        self._stops: dict[int, tuple[str, Callable[[], None]]] = {}
        self._next = 0

    def add(self, what: str, stop: Callable[[], None]) -> int:
        """Called by whoever starts something: remember how to stop it; returns the key for :meth:`done`."""
        self._next += 1
        self._stops[self._next] = (what, stop)
        return self._next

    def done(self, key: int | None) -> None:
        """Called once the thing registered under ``key`` is stopped (``None`` and unknown keys are ignored)."""
        if key is not None:
            self._stops.pop(key, None)

    def run_all(self) -> None:
        """Stop everything still registered, newest first; a stop that raises is reported and the others run."""
        for key in sorted(self._stops, reverse=True):
            what, stop = self._stops.pop(key)
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"stopping {what} failed: {exc}", file=sys.stderr)


#: Everything the tests or the bench started and has not stopped yet; stopped at exit at the latest.
RUNNING = StopRegistry()
atexit.register(RUNNING.run_all)


def stop_popen(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """SIGTERM a child process, SIGKILL it if it has not exited after ``timeout`` seconds; its exit status.

    Whatever goes wrong on the way, the process does not outlive the call (``None``:
    it could not even be killed within a further bound).
    """
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:  # last resort: whatever went wrong above, the process goes
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
    return proc.returncode


class Service:
    """Something started for a test or a bench run: ``start()``/``stop()``, or ``with``; stopped at exit at the latest.

    Subclasses implement :meth:`start` (calling :meth:`_started` once there is
    something to stop) and :meth:`stop` (calling :meth:`_stopped`); ``stop`` must
    be safe to call twice.
    """

    _stop_key: int | None = None

    def start(self) -> Self:
        """Start it and wait until it serves; returns ``self``."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop it and wait until it is gone; does nothing when it is not running."""
        raise NotImplementedError

    def _started(self, what: str) -> None:
        """Called by :meth:`start` as soon as there is something to stop: list it in :data:`RUNNING`."""
        if self._stop_key is None:
            self._stop_key = RUNNING.add(what, self.stop)

    def _stopped(self) -> None:
        """Called by :meth:`stop`: no longer listed in :data:`RUNNING`."""
        RUNNING.done(self._stop_key)
        self._stop_key = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
