"""What a worker tells its supervisor, and how it ends with it.

- **prepared, go, ready**: once its queue is open and recovered and its plugins started, the
  worker writes ``prepared`` on the pipe the supervisor gave it (``--link-fds TELL,HEAR``) and
  waits for ``go`` on the other; then it opens its listeners and writes ``ready``. The
  supervisor says ``go`` once every worker is prepared, so all start listening together: a
  client that connects as soon as the port accepts is not left with worker 1 alone. A worker
  that exits before it is ready failed to start.
- **wake all** (``run``) and **reload the others** (``reload PID``): one datagram to the
  supervisor's control socket (``<state_dir>/control.sock``, the one ``pipeline queue retry``
  pokes), which passes it on to every worker as SIGUSR1 or SIGHUP. The console's "retry now"
  and its Save, made in worker 1, so reach every worker.
- **ending with the supervisor**: a worker asks the kernel for SIGKILL when the supervisor
  dies (``PR_SET_PDEATHSIG``), so killing the supervisor stops the whole gateway the way
  killing one process did (what was leased is recovered at the next start) and no orphan keeps
  the listening port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
from pathlib import Path

from ..control import socket_path
from .slot import WorkerSlot

log = logging.getLogger("mailpipe.workers")

WAKE = b"run"
RELOAD = b"reload"
_PR_SET_PDEATHSIG = 1


def end_with_supervisor(slot: WorkerSlot) -> None:
    """Called first thing in a worker: SIGKILL this process when its supervisor dies (Linux).

    If the supervisor is already gone (the parent is not ``slot.supervisor`` any more), the
    worker ends at once.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM still reaches the workers
        log.debug("PR_SET_PDEATHSIG unavailable")
    if slot.supervisor is not None and os.getppid() != slot.supervisor:
        os.kill(os.getpid(), signal.SIGKILL)


class StartLink:
    """A worker's end of the start-up pipes: ``prepared``, wait for ``go``, ``ready`` (see the module's text)."""

    def __init__(self, tell: int, hear: int) -> None:
        self.tell = tell
        self.hear = hear

    @classmethod
    def parse(cls, text: str) -> StartLink:
        """``TELL,HEAR`` (two file descriptor numbers, as the supervisor passes them)."""
        tell, _, hear = text.partition(",")
        return cls(int(tell), int(hear))

    def _say(self, word: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.tell, word + b"\n")

    async def prepared(self, stopping: asyncio.Event) -> None:
        """Say ``prepared``; return when the supervisor says ``go`` (or closes the pipe, or ``stopping`` is set)."""
        self._say(b"prepared")
        loop = asyncio.get_running_loop()
        heard: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            with contextlib.suppress(OSError):
                os.read(self.hear, 16)
            if not heard.done():
                heard.set_result(None)

        loop.add_reader(self.hear, readable)
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait([heard, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            loop.remove_reader(self.hear)
            with contextlib.suppress(OSError):
                os.close(self.hear)

    def ready(self) -> None:
        """Say ``ready`` (the listeners accept mail) and close the pipe."""
        self._say(b"ready")
        with contextlib.suppress(OSError):
            os.close(self.tell)


def tell_supervisor(state_dir: Path, word: bytes) -> bool:
    """Send ``word`` (``WAKE`` or ``RELOAD``) to the supervisor's control socket; False when nobody listens."""
    message = word if word != RELOAD else RELOAD + f" {os.getpid()}".encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message, str(socket_path(state_dir)))
        return True
    except OSError as exc:
        log.warning("cannot reach the supervisor at %s: %s", socket_path(state_dir), exc)
        return False


def parse(data: bytes) -> tuple[bytes, int | None]:
    """A control datagram as (word, pid): ``run`` -> (WAKE, None); ``reload 123`` -> (RELOAD, 123)."""
    word, _, rest = data.strip().partition(b" ")
    try:
        pid = int(rest) if rest else None
    except ValueError:
        pid = None
    return word, pid
