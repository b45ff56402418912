"""SMTP load whose clients resend what got no 250, and the tally of what reached the sink (the kill tests).

Shared by tests/robustness/test_kill_under_load.py (one process killed) and
tests/workers/test_kill_workers.py (workers and their supervisor killed): SESSIONS threads send numbered
messages (``Subject: load N``) one by one, a cut session reconnects and sends the message again (as
real clients do), and a killer thread kills at points of the load's progress. ``tally`` then tells the
duplicates apart by the gateway's queue ID in the Received header.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.core.helpers import make_message
from tests.peers.net import port_accepts, wait_until
from tests.peers.sink import Received

TRACE = re.compile(rb"\(mailpipe\) with \S+ id (\S+)")
T = TypeVar("T")


def trace(message: Received) -> tuple[int, str]:
    """(message number, the gateway's queue ID) of a message the sink received."""
    number = int(message.data.split(b"Subject: load ", 1)[1].split(b"\r\n", 1)[0])
    found = TRACE.search(message.data)
    assert found is not None, message.data[:300]
    return number, found.group(1).decode()


@dataclass
class Tally:
    """What reached the sink: lost messages and the two kinds of duplicates."""

    lost: list[int]
    intake_twice: dict[int, int]  # taken twice by the intake (two queue IDs): the client sent it again
    unexplained: list[int]  # taken twice although its client never had to resend it
    delivered_twice: dict[str, int]  # one queue ID delivered twice: a kill between the remote 250 and its record
    delivered_unique: int
    delivered_total: int

    @property
    def client_duplicates(self) -> int:
        return sum(c - 1 for c in self.intake_twice.values())

    @property
    def rfc5321_duplicates(self) -> int:
        return sum(c - 1 for c in self.delivered_twice.values())


@dataclass
class ResendingLoad:
    """``messages`` numbered messages to ``host:port`` from ``sessions`` clients, within ``deadline`` seconds."""

    host: str
    port: int
    messages: int
    sessions: int
    deadline: float
    acked: set[int] = field(default_factory=set)
    resent: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    abort: threading.Event = field(default_factory=threading.Event)  # a thread failed: the others stop early
    go: threading.Event = field(default_factory=threading.Event)  # cleared: no session starts a new message

    def __post_init__(self) -> None:
        self.ends = time.monotonic() + self.deadline
        self.go.set()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No session starts another message meanwhile (messages in flight go on): for a killer that waits
        for the gateway to come back, so that the load does not run out before its next kill."""
        self.go.clear()
        try:
            yield
        finally:
            self.go.set()

    def session(self, ids: list[int]) -> int:
        """Send ``ids`` one by one, resending after an error (bounded); return how many got a 250."""
        client: smtplib.SMTP | None = None
        sent = 0
        try:
            for n in ids:
                while not self.go.wait(0.1):  # bounded by the deadline and by abort, like everything here
                    if self.abort.is_set() or time.monotonic() > self.ends:
                        return sent
                for _attempt in range(30):  # bounded retransmissions of one message
                    if self.abort.is_set() or time.monotonic() > self.ends:
                        return sent
                    try:
                        if client is None:
                            wait_until(lambda: port_accepts(self.host, self.port) or self.abort.is_set(), 30,
                                       "gateway back")
                            client = smtplib.SMTP(self.host, self.port, timeout=15)
                            client.ehlo("load.test")
                        client.sendmail("load@example.org", [f"r{n}@example.net"], make_message(f"load {n}"))
                        with self.lock:
                            self.acked.add(n)
                        sent += 1
                        break
                    except (OSError, smtplib.SMTPException):
                        with self.lock:
                            self.resent.add(n)
                        try:
                            if client is not None:
                                client.close()
                        except OSError:
                            pass
                        client = None
            if client is not None:
                try:
                    client.quit()
                except (OSError, smtplib.SMTPException):
                    pass
            return sent
        except BaseException:
            self.abort.set()
            raise

    def wait_acknowledged(self, point: int, what: str) -> bool:
        """Wait until ``point`` messages got their 250; False when another thread failed (stop killing)."""
        wait_until(lambda: len(self.acked) >= point or self.abort.is_set(), max(1.0, self.ends - time.monotonic()),
                   what)
        return not self.abort.is_set()

    def run(self, killer: Callable[[], T]) -> tuple[T, list[int]]:
        """Run every session and ``killer`` at once; ``killer``'s result and each session's count of 250s.

        A failing killer or session fails the caller (``.result()`` re-raises); either sets ``abort``.
        """
        def guarded() -> T:
            try:
                return killer()
            except BaseException:
                self.abort.set()
                raise

        ids = list(range(self.messages))
        with ThreadPoolExecutor(max_workers=self.sessions + 1, thread_name_prefix="load") as pool:
            kill_future = pool.submit(guarded)
            futures = [pool.submit(self.session, ids[i::self.sessions]) for i in range(self.sessions)]
            kills = kill_future.result(timeout=self.deadline + 60)
            sent = [f.result(timeout=self.deadline + 60) for f in futures]
        return kills, sent

    def delivered(self, received: list[Received]) -> bool:
        """Every acknowledged message is among ``received``."""
        return self.acked <= {trace(m)[0] for m in list(received)}

    def tally(self, received: list[Received]) -> Tally:
        """Count what reached the sink against what the clients were told."""
        copies = Counter(trace(m) for m in received)
        numbers = Counter(n for n, _qid in copies)
        intake_twice = {n: c for n, c in numbers.items() if c > 1}
        return Tally(
            lost=sorted(self.acked - set(numbers)),
            intake_twice=intake_twice,
            unexplained=sorted(n for n in intake_twice if n not in self.resent),
            delivered_twice={f"{n}/{qid}": c for (n, qid), c in copies.items() if c > 1},
            delivered_unique=len(numbers),
            delivered_total=sum(copies.values()),
        )


def figures(load: ResendingLoad, tally: Tally, **extra: Any) -> dict[str, Any]:
    """The figures a kill test prints and writes beside its results."""
    return {"messages": load.messages, "sessions": load.sessions, **extra, "acknowledged": len(load.acked),
            "resent_by_clients": len(load.resent), "delivered_unique": tally.delivered_unique,
            "delivered_total": tally.delivered_total, "lost": len(tally.lost),
            "duplicates_client_resent": tally.client_duplicates,
            "duplicates_rfc5321_6_1": tally.rfc5321_duplicates}
