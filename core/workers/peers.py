"""Live sessions of every worker, for the console and the metrics page in worker 1.

Each worker of a supervised ``pipeline serve`` answers questions about itself on a Unix
socket, ``<state_dir>/workers/<index>.sock``: one request line (``sessions``), one JSON line
back. Worker 1, where the console and the metrics page run, asks the others and merges
their answers with its own (``WorkerSessions``); a worker that does not answer within a
second (it is restarting) is left out of that answer. The queue needs none of this: every
worker reads every queue file (or the shared PostgreSQL queue) itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from ..sessions import Sessions
from .slot import WorkerSlot

log = logging.getLogger("mailpipe.workers")
ASK_TIMEOUT = 1.0


def workers_dir(state_dir: Path) -> Path:
    """The folder of the workers' sockets (and of the metrics files of multi-process Prometheus)."""
    return state_dir / "workers"


def peer_path(state_dir: Path, index: int) -> Path:
    """Worker ``index``'s socket."""
    return workers_dir(state_dir) / f"{index}.sock"


class PeerServer:
    """Answers the other workers' questions about this worker (its live sessions)."""

    def __init__(self, state_dir: Path, slot: WorkerSlot, sessions: Sessions) -> None:
        self.path = peer_path(state_dir, slot.index)
        self.sessions = sessions
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on this worker's socket (a stale one left by a dead process is replaced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        try:
            self._server = await asyncio.start_unix_server(self._answer, path=str(self.path))
        except OSError as exc:
            log.warning("worker socket %s unavailable (%s): its sessions are not shown by worker 1", self.path, exc)

    async def stop(self) -> None:
        """Stop answering."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                question = (await reader.readline()).strip()
            answer: Any = self.sessions.snapshot() if question == b"sessions" else {"error": "unknown question"}
            writer.write(json.dumps(answer, default=str).encode() + b"\n")
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()


async def ask(path: Path, question: str) -> Any:
    """One question to one worker's socket; None when it does not answer in time."""
    try:
        async with asyncio.timeout(ASK_TIMEOUT):
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                writer.write(question.encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
        return json.loads(line) if line else None
    except (OSError, TimeoutError, ValueError):
        return None


class WorkerSessions:
    """The live sessions of every worker, as ``Sessions.snapshot`` and ``counts`` give them for one.

    Made by the gateway of worker 1 (``Gateway.worker_sessions``); read by the console's
    Sessions page and the metrics page. Each session carries ``worker`` (its worker's
    number) and an ``id`` unique across workers (``2-15``: session 15 of worker 2).
    """

    def __init__(self, slot: WorkerSlot, state_dir: Path, local: Sessions) -> None:
        self.slot = slot
        self.state_dir = state_dir
        self.local = local

    async def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every worker's sessions: ``{"in": [...], "out": [...]}``, oldest first."""
        if self.slot.count == 1:
            return self.local.snapshot()
        others = [i for i in range(1, self.slot.count + 1) if i != self.slot.index]
        answers = await asyncio.gather(*(ask(peer_path(self.state_dir, i), "sessions") for i in others))
        merged: dict[str, list[dict[str, Any]]] = {"in": [], "out": []}
        for index, answer in [(self.slot.index, self.local.snapshot()), *zip(others, answers, strict=True)]:
            if not isinstance(answer, dict):
                continue
            for direction in merged:
                for session in answer.get(direction) or []:
                    merged[direction].append({**session, "worker": index, "id": f"{index}-{session.get('id')}"})
        for sessions in merged.values():
            sessions.sort(key=lambda s: s.get("since") or 0.0)
        return merged

    async def counts(self) -> dict[str, int]:
        """How many sessions are live in each direction, over every worker."""
        if self.slot.count == 1:
            return self.local.counts()
        live = await self.snapshot()
        return {direction: len(sessions) for direction, sessions in live.items()}
