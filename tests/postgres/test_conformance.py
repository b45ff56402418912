"""The postgres queue backend keeps every promise of the queue interface (the conformance suite)."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpipe.core.testing.queue import QueueConformance, QueueFactory
from mailpipe.plugins.postgres_queue import PostgresQueue
from tests.peers.net import make_traversable
from tests.peers.postgres import PG_USER, PostgresPeer

HISTORY_DAYS = 7.0


class TestPostgresQueue(QueueConformance):
    """``PostgresQueue`` on a fresh database of the session's private cluster."""

    retention = HISTORY_DAYS * 86400.0
    shares_store = True  # several nodes open one database at once: that is its purpose

    @pytest.fixture
    def make_queue(self, pg_dsn: str) -> QueueFactory:
        return lambda: PostgresQueue(pg_dsn, history_days=HISTORY_DAYS, node="conformance", pool_size=4)

    @pytest.fixture
    def make_full_queue(self, postgres: PostgresPeer, tmp_path: Path) -> Iterator[QueueFactory]:
        """A database whose tables live in a tablespace on a 3 MB tmpfs: PostgreSQL's own disk-full error."""
        mount = tmp_path / "small"
        mount.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.decode().strip()}")
        make_traversable(mount)
        entry = pwd.getpwnam(PG_USER)
        os.chown(mount, entry.pw_uid, entry.pw_gid)
        space = f"small_{os.getpid()}_{mount.stat().st_ino}"
        postgres.sql(f"CREATE TABLESPACE {space} LOCATION '{mount}'")
        name = f"full_{space}"
        postgres.sql(f'CREATE DATABASE "{name}" TABLESPACE {space}')
        dsn = postgres.dsn(name)
        yield lambda: PostgresQueue(dsn, history_days=HISTORY_DAYS, node="conformance", pool_size=4)
        postgres.sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        postgres.sql(f"DROP TABLESPACE {space}")
        subprocess.run(["umount", "-l", str(mount)], check=False)
