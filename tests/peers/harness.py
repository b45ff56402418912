"""One in-process gateway for the tests that need to move time: the only place tests touch internals.

Most tests drive mailpipe from outside (``pipeline serve``, SMTP, the CLI). Tests
of retry, expiry, schedules, pools and DNS need a clock they can move without
sleeping; they use ``Harness``: the real gateway (real queue, real plugin chain,
real peers on loopback) on a ``ManualClock``, reached only through the calls
below. When the gateway's insides change, this file changes, not the tests.

    async with Harness(workdir, config) as h:
        mid = await h.submit("alice@example.org", ["bob@example.net"])
        await h.deliver()                       # everything due now, to the end
        assert await h.states(mid) == {"bob@example.net": "delivered"}
        h.clock.advance(3600)
        assert await h.tick() == 1              # one scheduler pass, honouring the schedule

``SyncHarness`` is the same for plain (non-async) tests: its own event loop,
the same method names, no ``await``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mailpipe.core.clock import ManualClock
from mailpipe.core.config import load_config
from mailpipe.core.events import Event
from mailpipe.core.gateway import Gateway
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient
from mailpipe.core.queue import Attempt, MessageDetail, MessageSummary

T = TypeVar("T")


def simple_message(sender: str, recipients: list[str], subject: str = "Quarterly report") -> bytes:
    """A small RFC 5322 message with CRLF line ends and a unique Message-ID."""
    return (f"From: {sender or 'nobody@origin.test'}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.monotonic_ns()}.{subject.replace(' ', '.')}@origin.test>\r\n\r\n"
            "Hello.\r\n").encode()


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait until ``condition()`` (plain or async) is true, letting the gateway's event loop run meanwhile.

    Fails the test with ``what`` after ``timeout`` seconds: a wait never falls through.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class Harness:
    """``async with Harness(workdir, config) as h``: an opened gateway on a manual clock, no listeners.

    ``config`` is a whole configuration as a dict (written to ``workdir/mailpipe.yaml``)
    or the path of a config file. ``listen=True`` also opens the SMTP intake.
    """

    def __init__(self, workdir: Path, config: dict[str, Any] | Path, *, start: float | None = None,
                 listen: bool = False) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(config, dict):
            self.config_path = workdir / "mailpipe.yaml"
            self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        else:
            self.config_path = Path(config)
        self.clock = ManualClock(start)
        self._listen = listen
        self._gw = Gateway(load_config(self.config_path), clock=self.clock)

    # -- life ---------------------------------------------------------------------------------

    async def open(self) -> Harness:
        await self._gw.open()
        if self._listen:
            assert self._gw.intake is not None
            await self._gw.intake.start()
        return self

    async def close(self) -> None:
        try:
            if self._listen and self._gw.intake is not None:
                await self._gw.intake.stop()
            await self._gw.scheduler.stop(5.0)
        finally:
            await self._gw.close()

    async def __aenter__(self) -> Harness:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what it is -----------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        return self._gw.runtime.settings.hostname

    @property
    def listen_address(self) -> tuple[str, int]:
        spec = self._gw.runtime.settings.listen[0]
        return spec.host, spec.port

    def plugin(self, name: str | None = None) -> Any:
        """The chain's plugin instance named ``name`` (default: the first entry)."""
        plugins = self._gw.runtime.plugins
        if name is None:
            return plugins[0]
        return next(p for p in plugins if p.instance_name == name)

    # -- mail in ----------------------------------------------------------------------------

    async def submit(self, sender: str, recipients: list[str], data: bytes | None = None,
                     subject: str = "Quarterly report") -> str:
        """Queue one message at the clock's time, as the intake would after ``accept``; its id."""
        now = self.clock.now()
        data = data if data is not None else simple_message(sender, recipients, subject)
        message = Message(new_queue_id(now), sender, [Recipient(r) for r in recipients], now, size=len(data))
        await self._gw.queue.store(message, data)
        return message.id

    # -- time and delivery ------------------------------------------------------------------

    async def deliver(self, timeout: float = 60.0) -> None:
        """Deliver everything due at the clock's time, whatever the schedule, and wait for it."""
        await self._gw.scheduler.run_until_idle(self.clock.now(), timeout=timeout)

    async def tick(self, timeout: float = 60.0) -> int:
        """One pass of the running scheduler at the clock's time (schedule and pruning included).

        Returns how many messages it started; waits for them to finish.
        """
        return await self._gw.scheduler.tick(timeout=timeout)

    def intake_first(self, active: bool) -> None:
        """Make the scheduler behave as during a burst of incoming mail (``delivery.intake_first``), or not."""
        gate = self._gw.scheduler.intake_first
        assert gate is not None
        gate.active = active

    def force_run(self) -> None:
        """What ``pipeline queue retry`` tells a running gateway: start a run even outside the schedule."""
        self._gw.scheduler.wake(force=True)

    def next_window(self) -> float | None:
        """Start of the next schedule window after the clock's time (None without a schedule)."""
        return self._gw.scheduler.windows.next_window(self.clock.now())

    # -- what happened ------------------------------------------------------------------------

    async def detail(self, message_id: str) -> MessageDetail | None:
        """The message with its recipients and attempts; None once it left the queue's history."""
        return await self._gw.queue.get(message_id)

    async def states(self, message_id: str) -> dict[str, str]:
        """recipient -> state (pending, deferred, held, delivered, failed, expired)."""
        detail = await self.detail(message_id)
        assert detail is not None, f"message {message_id} is not in the queue"
        return {r.address: r.state.value for r in detail.message.recipients}

    async def next_attempt(self, message_id: str, recipient: str) -> float:
        detail = await self.detail(message_id)
        assert detail is not None, f"message {message_id} is not in the queue"
        return next(r.next_attempt for r in detail.message.recipients if r.address == recipient)

    async def attributes(self, message_id: str) -> dict[str, Any]:
        detail = await self.detail(message_id)
        assert detail is not None, f"message {message_id} is not in the queue"
        return dict(detail.message.attributes)

    async def attempts(self, **filters: Any) -> list[Attempt]:
        """The message log (filters: message, sender, recipient, since, outcome)."""
        return await self._gw.queue.attempts(limit=10_000, **filters)

    async def last_attempts(self, message_id: str) -> dict[str, Attempt]:
        """recipient -> its latest attempt."""
        rows = sorted(await self.attempts(message=message_id), key=lambda a: a.time)
        return {a.recipient: a for a in rows}

    async def events(self, kind: str | None = None) -> list[Event]:
        """Stored events, oldest first; ``kind`` matches a prefix."""
        return await self._gw.queue.events(kind=kind, limit=10_000)

    async def queued(self, state: str | None = None) -> list[MessageSummary]:
        """What ``pipeline queue list`` shows."""
        return await self._gw.queue.list(state=state)

    def emit(self, kind: str, text: str, level: str = "info") -> None:
        """Raise a gateway event as a plugin would (observers such as alerts see it)."""
        self._gw.events.emit(kind, text, level=level)

    # -- what an administrator does ---------------------------------------------------------------

    async def hold(self, *message_ids: str) -> int:
        return await self._gw.queue.hold(list(message_ids))

    async def release(self, *message_ids: str) -> int:
        return await self._gw.queue.release_hold(list(message_ids), self.clock.now())

    async def retry_now(self, *message_ids: str) -> int:
        return await self._gw.queue.retry_now(list(message_ids) or None, self.clock.now())

    async def delete(self, *message_ids: str) -> int:
        return await self._gw.queue.delete(list(message_ids))


class SyncHarness:
    """``Harness`` for plain test functions: the same calls, run on a private event loop."""

    def __init__(self, workdir: Path, config: dict[str, Any] | Path, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.h = Harness(workdir, config, **kwargs)
        self.clock = self.h.clock
        self.run(self.h.open())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def plugin(self, name: str | None = None) -> Any:
        return self.h.plugin(name)

    def submit(self, sender: str, recipients: list[str], data: bytes | None = None, subject: str = "test") -> str:
        return self.run(self.h.submit(sender, recipients, data, subject))

    def deliver(self, timeout: float = 60.0) -> float:
        """Run every delivery due now to the end; return how long it took (wall clock)."""
        started = time.monotonic()
        self.run(self.h.deliver(timeout))
        return time.monotonic() - started

    def tick(self, timeout: float = 60.0) -> int:
        return self.run(self.h.tick(timeout))

    def detail(self, message_id: str) -> MessageDetail | None:
        return self.run(self.h.detail(message_id))

    def states(self, message_id: str) -> dict[str, str]:
        return self.run(self.h.states(message_id))

    def last_attempts(self, message_id: str) -> dict[str, Attempt]:
        return self.run(self.h.last_attempts(message_id))

    def attempts(self, **filters: Any) -> list[Attempt]:
        return self.run(self.h.attempts(**filters))

    def events(self, kind: str | None = None) -> list[Event]:
        return self.run(self.h.events(kind))

    def close(self) -> None:
        try:
            self.run(self.h.close())
        finally:
            self.loop.close()
