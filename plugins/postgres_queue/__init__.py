"""The ``postgres`` queue plugin: one queue in PostgreSQL that several ``pipeline serve`` nodes share.

::

    queue:
      postgres:
        dsn: "postgresql://mailpipe@db.example:5432/mailpipe"  # libpq URI or key=value; password via
                                                              # ${ENV}, PGPASSWORD or ~/.pgpass
        lease: 60s       # a node's claimed mail goes to the others this long after it stopped renewing
        pool_size: 10    # connections per node

The schema is created at first start (and migrated later); see docs/scale-out.md.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.settings import Duration, Strict

from .bodies import BodyStore, ByteaBodies
from .store import PostgresQueue


class PostgresQueueOptions(Strict):
    """Options of the postgres queue."""

    dsn: SecretStr = Field(description="libpq connection URI or key=value string; never shown with its password")
    lease: Duration = Field(60.0, ge=1.0, description="a node's claimed messages go back to the other nodes this "
                            "long after it stopped renewing them (it renews every third of it)")
    pool_size: int = Field(10, ge=2, le=200, description="connections per node (one more for notifications)")
    timeout: Duration = Field(10.0, gt=0, description="how long to wait for a connection before a store "
                              "fails (451) or a claim is tried again")
    history_days: float = Field(30.0, gt=0, description="keep the message log, the event log and finished "
                                "messages this many days; older entries are pruned hourly, by one node")


class PostgresQueuePlugin(Plugin):
    """Durable queue in PostgreSQL, shared by several nodes (leases, SKIP LOCKED claims, LISTEN/NOTIFY)."""

    name = "postgres"
    Options = PostgresQueueOptions

    @hookimpl
    def open_queue(self, context: PluginContext) -> PostgresQueue:
        """Called once by the gateway (and by queue commands) at start: the backend for ``queue: {postgres: ...}``."""
        opts: PostgresQueueOptions = self.options  # type: ignore[assignment]
        return PostgresQueue(opts.dsn.get_secret_value(), lease=opts.lease, pool_size=opts.pool_size,
                             history_days=opts.history_days, node=context.settings.hostname, timeout=opts.timeout)


__all__ = ["BodyStore", "ByteaBodies", "PostgresQueue", "PostgresQueuePlugin"]
