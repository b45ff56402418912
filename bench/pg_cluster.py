"""The bench's private PostgreSQL cluster, and the command line the PostgreSQL-only benches share.

The cluster is tests/peers/postgres.py's :class:`PostgresPeer` (Debian's PostgreSQL 15,
``initdb`` + ``pg_ctl`` as the ``postgres`` user in a temp dir, its own socket folder,
a loopback address and a free port, ``fsync`` and ``synchronous_commit`` on, stopped by
its PID). Installed by ``.ci/install-postgres.sh``; needs root.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.peers.postgres import PostgresPeer, available
from tests.peers.service import RUNNING

from .common import BenchError, install_signal_handlers


class BenchCluster:
    """One private cluster per bench invocation, started the first time a run asks for a database."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.peer: PostgresPeer | None = None

    def database(self, prefix: str = "bench") -> str:
        """The DSN of a fresh, empty database (starting the cluster first if it is not running)."""
        if self.peer is None:
            reason = available()
            if reason:
                raise BenchError(reason)
            peer = PostgresPeer(self.workdir)
            RUNNING.add("PostgreSQL", peer.stop)
            self.peer = peer.start()  # a cluster that did not start is tried again by the next run
        return self.peer.create_database(prefix)

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while the cluster runs (its tree is every PostgreSQL process)."""
        return self.peer.pid if self.peer is not None else None

    def counters(self, dsn: str) -> dict[str, int]:
        """Transactions committed in the database at ``dsn``, and the cluster's WAL: records, bytes, fsyncs.

        From ``pg_stat_database`` and ``pg_stat_wal``: backends report them when a transaction
        ends (at most once a second) and when they exit, so read them after the nodes stopped.
        """
        assert self.peer is not None
        database = dsn.rsplit("/", 1)[1]
        row = self.peer.sql("SELECT d.xact_commit, w.wal_records, w.wal_bytes, w.wal_sync FROM pg_stat_database d, "
                            f"pg_stat_wal w WHERE d.datname = '{database}'")
        return dict(zip(("commits", "wal_records", "wal_bytes", "wal_syncs"), map(int, row.split("|")), strict=True))

    def pending(self, dsn: str) -> int:
        """Recipients still waiting for delivery (pending or deferred) in the queue at ``dsn``."""
        assert self.peer is not None
        database = dsn.rsplit("/", 1)[1]
        return int(self.peer.sql("SELECT count(*) FROM recipients WHERE state IN ('pending', 'deferred')",
                                 database) or 0)


def cluster_main(prog: str, description: str, body: Callable[[PostgresPeer, argparse.Namespace], None],
                 options: Callable[[argparse.ArgumentParser], None] | None = None, *,
                 messages: int = 2000) -> None:
    """The command line of a PostgreSQL-only bench: ``--messages``, ``--size`` and ``options``'s own.

    Parses the arguments, starts a private cluster in a temp dir, calls ``body(peer, args)``,
    then stops the cluster and removes its folder (also on Ctrl-C and SIGTERM).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--messages", type=int, default=messages, help=f"messages to store (default {messages})")
    parser.add_argument("--size", type=int, default=4096, help="body size in bytes (default 4096)")
    if options:
        options(parser)
    args = parser.parse_args()
    reason = available()
    if reason:
        sys.exit(f"{prog}: {reason}")
    install_signal_handlers()
    work = Path(tempfile.mkdtemp(prefix="mailpipe-bench-pg-"))
    try:
        with PostgresPeer(work / "pg") as peer:
            body(peer, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
