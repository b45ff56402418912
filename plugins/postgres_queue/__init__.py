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

from mailpipe.core.plugin import PluginContext
from mailpipe.core.settings import Duration

from ..sql_queue.plugin import QueueOptions, QueuePlugin
from .bodies import BodyStore, ByteaBodies
from .store import PostgresQueue


class PostgresQueueOptions(QueueOptions):
    """Options of the postgres queue."""

    dsn: SecretStr = Field(description="libpq connection URI or key=value string; never shown with its password")
    lease: Duration = Field(60.0, ge=1.0, description="a node's claimed messages go back to the other nodes this "
                            "long after it stopped renewing them (it renews every third of it)")
    pool_size: int = Field(10, ge=2, le=200, description="connections per node (one more for notifications)")
    timeout: Duration = Field(10.0, gt=0, description="how long to wait for a connection before a store "
                              "fails (451) or a claim is tried again")

    def make_queue(self, context: PluginContext) -> PostgresQueue:
        """The shared queue at ``dsn``; this gateway's ``hostname`` is its node name."""
        return PostgresQueue(self.dsn.get_secret_value(), lease=self.lease, pool_size=self.pool_size,
                             history_days=self.history_days, node=context.settings.hostname, timeout=self.timeout)


class PostgresQueuePlugin(QueuePlugin):
    """Durable queue in PostgreSQL, shared by several nodes (leases, SKIP LOCKED claims, LISTEN/NOTIFY)."""

    name = "postgres"
    Options = PostgresQueueOptions


__all__ = ["BodyStore", "ByteaBodies", "PostgresQueue", "PostgresQueuePlugin"]
