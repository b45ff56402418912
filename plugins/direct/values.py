"""Small durable values of direct delivery (MTA-STS policies, TLS-report counters).

Kept in the queue's database when the queue backend offers the optional
``KeyValueStore`` face (SQLite and PostgreSQL do), so they survive restarts and are
shared by the nodes of one queue; otherwise, and whenever the database cannot be
reached, in memory. A value that cannot be stored never fails a delivery.

``remember`` seconds: a value read from the database (or found missing there) is used
from memory for that long before the database is asked again, so a value needed for
every delivery (the MTA-STS policy of a domain) costs no database read each time.
"""

from __future__ import annotations

import logging
import time

from mailpipe.core.queue import KeyValueStore, QueueError

log = logging.getLogger("mailpipe.plugins.direct")

MEMORY_LIMIT = 20_000  # remembered keys; past it the stale ones are forgotten


class Values:
    """The values of one ``namespace``: in ``store`` when given, with a copy in memory."""

    def __init__(self, namespace: str, store: object | None = None, *, remember: float = 0.0) -> None:
        self.namespace = namespace
        self.store = store if isinstance(store, KeyValueStore) else None
        self.remember = remember
        self._memory: dict[str, tuple[str | None, float]] = {}  # key -> value (None: none), when read

    @property
    def durable(self) -> bool:
        """Whether the values live in the queue's database (else only in this process)."""
        return self.store is not None

    def _keep(self, key: str, value: str | None) -> None:
        if len(self._memory) >= MEMORY_LIMIT:
            limit = time.monotonic() - self.remember
            self._memory = {k: v for k, v in self._memory.items() if v[0] is not None and v[1] >= limit}
        self._memory[key] = (value, time.monotonic())

    async def get(self, key: str) -> str | None:
        """The value of ``key``: remembered, else the stored one, else (database away) the copy in memory."""
        known = self._memory.get(key)
        if self.store is None:
            return known[0] if known else None
        if known is not None and time.monotonic() - known[1] < self.remember:
            return known[0]
        try:
            value = await self.store.kv_get(self.namespace, key)
        except QueueError as exc:
            log.warning("cannot read %s/%s from the queue database: %s", self.namespace, key, exc)
            return known[0] if known else None
        self._keep(key, value)
        return value

    async def put(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` (in memory at least)."""
        self._keep(key, value)
        if self.store is not None:
            try:
                await self.store.kv_put(self.namespace, key, value)
            except QueueError as exc:
                log.warning("cannot store %s/%s in the queue database: %s", self.namespace, key, exc)

    async def delete(self, key: str) -> None:
        """Forget ``key``."""
        self._memory.pop(key, None)
        if self.store is not None:
            try:
                await self.store.kv_delete(self.namespace, key)
            except QueueError as exc:
                log.warning("cannot delete %s/%s from the queue database: %s", self.namespace, key, exc)

    async def items(self, prefix: str = "") -> dict[str, str]:
        """Every key starting with ``prefix`` and its value."""
        if self.store is not None:
            try:
                return await self.store.kv_items(self.namespace, prefix)
            except QueueError as exc:
                log.warning("cannot read %s from the queue database: %s", self.namespace, exc)
        return {k: v for k, (v, _) in sorted(self._memory.items()) if v is not None and k.startswith(prefix)}
