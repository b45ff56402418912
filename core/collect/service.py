"""The collector: every collecting account's mailbox at its time, on demand, and what is known of each.

When: every ``collect.every`` (default 5m), or, when ``delivery.send_immediately`` is false
and ``every`` is not given, at each ``delivery.schedule`` window (the seed's dial-up
schedule); the first collection starts with the gateway. A failing mailbox (wrong password,
server down, certificate refused, connection dropped) is tried again with backoff (the
interval doubled per failure, at most an hour or the interval) and raises one event per
failure episode (``collect.login_failed`` or ``collect.failed``) and one when it works again
(``collect.recovered``). ``collect_now`` (console, ``pipeline collect``) starts a run at
once. Several gateways sharing one queue (PostgreSQL) take turns per mailbox (``run_once``).
The settings are read from the runtime in force at each run, so a reload applies to the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from ..durations import format_duration
from ..intake.services import IntakeServices
from ..pop3 import TokenProvider
from ..queue import CollectionLedger, QueueAdmin
from ..settings import Account
from ..windows import Windows
from .mailbox import Collection, MailboxRun, RunReport, source_of
from .status import MailboxStatus

log = logging.getLogger("mailpipe.collect")

DEFAULT_EVERY = 300.0
MAX_BACKOFF = 3600.0
SAFETY_WAKE = 60.0  # look at the accounts at least this often (a reload may have added one)


class Collector:
    """The collections of one gateway. ``start()``/``stop()`` run the timer; ``collect()`` runs one now and waits.

    ``queue`` is the gateway's queue backend: its ``CollectionLedger`` face keeps the marks
    (a backend without it cannot collect: one ``collect.unsupported`` event says so), its
    ``run_once`` lets nodes sharing it take turns.
    """

    def __init__(self, intake: IntakeServices, queue: object, *, resolve: Callable[[Path], Path] = lambda p: p,
                 tokens: TokenProvider | None = None) -> None:
        self.intake = intake
        self.admin = queue if isinstance(queue, QueueAdmin) else None
        ledger = queue if isinstance(queue, CollectionLedger) else None
        self.collection = Collection(intake, ledger, resolve, tokens) if ledger is not None else None
        self.windows = Windows(lambda: intake.runtimes.current.settings.delivery)
        self._status: dict[str, MailboxStatus] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: dict[str, asyncio.Task[RunReport | None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._unsupported = False

    # -- what there is ----------------------------------------------------------------------

    def accounts(self) -> list[Account]:
        """The accounts of the configuration in force that collect."""
        return [a for a in self.intake.runtimes.current.settings.accounts if a.collect is not None]

    def find(self, name: str | None) -> list[Account]:
        """The collecting accounts whose address or username is ``name`` (all of them for None)."""
        if name is None:
            return self.accounts()
        wanted = name.lower()
        return [a for a in self.accounts() if wanted in (a.address.lower(), a.username.lower())]

    def interval(self, account: Account) -> float | None:
        """Seconds between collections; None when they follow the delivery schedule's windows."""
        assert account.collect is not None
        if account.collect.every is not None:
            return account.collect.every
        delivery = self.intake.runtimes.current.settings.delivery
        if not delivery.send_immediately and delivery.schedule:
            return None
        return DEFAULT_EVERY

    def status(self, account: Account) -> MailboxStatus:
        """The status of ``account`` (made on first use; its description follows the settings in force)."""
        assert account.collect is not None
        every = self.interval(account)
        spec = account.collect.distribute
        st = self._status.get(account.address.lower())
        if st is None:
            st = self._status[account.address.lower()] = MailboxStatus(account.address, source_of(account), "", "")
        st.source = source_of(account)
        st.schedule = f"every {format_duration(every)}" if every is not None else "at the delivery schedule"
        st.target = account.collect.deliver_to or (
            f"multidrop: {', '.join(spec.domains)} (else {spec.default})" if spec is not None else "")
        st.running = account.address.lower() in self._running or self._lock(account).locked()
        return st

    def statuses(self) -> list[MailboxStatus]:
        """Every collecting account's status, in configuration order (the console's Internet Mail Accounts)."""
        return [self.status(a) for a in self.accounts()]

    def _lock(self, account: Account) -> asyncio.Lock:
        return self._locks.setdefault(account.address.lower(), asyncio.Lock())

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the timer (``pipeline serve``): each account's first collection starts now (or at the next window)."""
        if self.accounts():
            log.info("collecting %d mailbox(es)", len(self.accounts()))
        self._task = asyncio.create_task(self._loop(), name="mailpipe-collector")

    async def stop(self) -> None:
        """Stop the timer and cut collections in progress (what they queued stays queued; nothing is lost)."""
        self._stopping = True
        self._wake.set()
        tasks = [t for t in [self._task, *self._running.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def collect_now(self, account: str | None = None) -> int:
        """Start a collection of ``account`` (address or username; all for None) at once; how many accounts."""
        found = self.find(account)
        for a in found:
            self.status(a).next_run = 0.0
        self._wake.set()
        return len(found)

    # -- one collection ------------------------------------------------------------------------

    async def collect(self, account: Account, *, dry_run: bool = False) -> RunReport:
        """Collect ``account``'s mailbox now and wait for it (one at a time per account); its report."""
        async with self._lock(account):
            return await self._collect(account, dry_run)

    async def _collect(self, account: Account, dry_run: bool) -> RunReport:
        st = self.status(account)
        st.running = True
        now = self.intake.clock.now()
        try:
            if self.collection is None:
                report = RunReport(account.address, st.source, now, now, dry_run)
                report.error, report.error_kind = "the queue backend keeps no collection ledger (UIDL marks)", "queue"
                if not self._unsupported:
                    self._unsupported = True
                    self.intake.events.emit("collect.unsupported", f"cannot collect {account.address}: "
                                            f"{report.error}; use the sqlite or postgres queue", level="error")
                return report
            report = await MailboxRun(self.collection, account, dry_run=dry_run).run()
        finally:
            st.running = False
        if not dry_run:
            self._record(account, st, report)
        return report

    def _record(self, account: Account, st: MailboxStatus, report: RunReport) -> None:
        """Update the status, emit the episode events, and set the next run."""
        events, now = self.intake.events, self.intake.clock.now()
        st.last_run = now
        st.on_server, st.too_large, st.refused = report.on_server, report.too_large, report.refused
        st.collected += len(report.collected)
        st.last_collected = len(report.collected)
        st.deleted += report.deleted
        every = self.interval(account) or DEFAULT_EVERY
        if report.error is not None:
            st.failures += 1
            st.last_error = report.error
            delay = min(every * 2 ** (st.failures - 1), max(every, MAX_BACKOFF))
            st.next_run = now + delay
            if st.failures == 1:
                kind = "collect.login_failed" if report.error_kind == "login" else "collect.failed"
                events.emit(kind, f"{account.address}: {report.error}; tried again in {format_duration(round(delay))}"
                            ", then less and less often until it works", level="error", account=account.address,
                            source=st.source)
            else:
                log.warning("%s: collection failed again (%d in a row): %s", account.address, st.failures, report.error)
        else:
            if st.failures:
                events.emit("collect.recovered", f"{account.address}: collecting again after {st.failures} failed "
                            "attempt(s)", account=account.address, source=st.source)
            st.failures, st.last_error, st.last_success = 0, None, now
            st.next_run = self._next_time(account, now)
        if report.collected or report.deleted or report.refused:
            parts = [f"{len(report.collected)} collected", f"{report.deleted} removed from the server"]
            if report.kept:
                parts.append(f"{report.kept} kept there")
            if report.too_large:
                parts.append(f"{report.too_large} too large")
            if report.refused:
                parts.append(f"{report.refused} refused")
            events.emit("collect.done", f"{account.address}: {', '.join(parts)}", account=account.address,
                        collected=len(report.collected), deleted=report.deleted, kept=report.kept,
                        too_large=report.too_large, refused=report.refused)

    def _next_time(self, account: Account, now: float) -> float:
        every = self.interval(account)
        if every is not None:
            return now + every
        window = self.windows.next_window(now)
        return window if window is not None else now + DEFAULT_EVERY

    # -- the timer -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            now = self.intake.clock.now()
            timeout = SAFETY_WAKE
            for account in self.accounts():
                st = self.status(account)
                if st.next_run is None:
                    st.next_run = now if self.interval(account) is not None else self._next_time(account, now)
                key = account.address.lower()
                if key in self._running:
                    continue
                if st.next_run <= now:
                    task = asyncio.create_task(self._scheduled(account, st.next_run == 0.0),
                                               name=f"collect-{account.address}")
                    self._running[key] = task
                    task.add_done_callback(lambda _t, k=key: self._done(k))
                else:
                    timeout = min(timeout, st.next_run - now)
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, timeout))
            except TimeoutError:
                pass
            self._wake.clear()

    def _done(self, key: str) -> None:
        self._running.pop(key, None)
        self._wake.set()

    async def _scheduled(self, account: Account, asked: bool) -> RunReport | None:
        """A timer-driven (or ``collect_now``) run; with a shared queue, one node per interval collects."""
        now = self.intake.clock.now()
        every = self.interval(account) or DEFAULT_EVERY
        if not asked and self.admin is not None and not await self.admin.run_once(
                f"collect:{source_of(account)}", now, every * 0.9):
            self.status(account).next_run = now + every
            return None
        try:
            return await self.collect(account)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not stop the timer: logged, tried again at the next interval
            log.exception("collection of %s failed", account.address)
            self.status(account).next_run = now + every
            return None
