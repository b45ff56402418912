"""Faults of this machine: a full disk answers 452 4.3.1 and loses nothing; an unusable queue stops the start."""

from __future__ import annotations

import smtplib
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink

from .helpers import fill_queue


def start_fails(mailpipe_factory, db: Path) -> str:
    gw = mailpipe_factory({"queue": {"sqlite": {"path": str(db)}},
                           "chain": [{"smarthost": {"server": "127.0.0.1", "port": 9, "tls": "none"}}]})
    with pytest.raises(AssertionError) as failed:
        gw.start(timeout=20)
    assert gw.proc.returncode == 1
    assert "Traceback" not in gw.log_text()
    return str(failed.value)


def test_corrupt_queue_is_a_clear_error(mailpipe_factory, workdir):
    db = workdir / "corrupt.sqlite3"
    db.write_bytes(b"this is not a database, it is a text file that got in the way\n" * 100)
    text = start_fails(mailpipe_factory, db)
    assert f"error: queue {db} is not a usable SQLite database" in text


def test_newer_queue_version_is_a_clear_error(mailpipe_factory, workdir):
    db = workdir / "newer.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    text = start_fails(mailpipe_factory, db)
    assert "schema version 999, newer than this mailpipe understands" in text


def test_full_disk_answers_452_and_loses_nothing(mailpipe_factory, small_disk: Path):
    """Once the queue's disk is full the intake answers 452 4.3.1; every message that got a 250 is delivered."""
    with RecordingSink("127.0.1.39") as sink:
        gw = mailpipe_factory({
            "hostname": "gw.test", "state_dir": str(small_disk / "state"),
            "delivery": {"send_immediately": False},
            "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}}],
        })
        gw.start()
        host, port = gw.address
        with smtplib.SMTP(host, port) as client:
            client.ehlo("client.test")
            accepted, refused = fill_queue(client, "a@example.org", "b@example.net")
        print(f"full disk: {len(accepted)} messages of 100 KB accepted, then {refused[:1]}")
        assert accepted, "nothing was accepted at all"
        assert refused and refused[0][0] == 452 and b"4.3.1" in refused[0][1], refused
        gw.stop()
        # Room again (a bigger disk): every message that got 250 is delivered, none lost.
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
        gw.write_config({**gw.config, "delivery": {"send_immediately": True}})
        gw.start()
        got = sink.wait_for(len(accepted), timeout=60)
        subjects = sorted(m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode() for m in got)
        assert subjects == sorted(accepted)
        wait_until(lambda: gw.cli_json("queue", "list") == [], 20, "queue drained")


def test_locked_queue_is_a_clear_error(mailpipe_factory, workdir):
    db = workdir / "locked.sqlite3"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE IF NOT EXISTS x (y)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        gw = mailpipe_factory({"queue": {"sqlite": {"path": str(db), "busy_timeout": "1s"}},
                               "chain": [{"smarthost": {"server": "127.0.0.1", "port": 9, "tls": "none"}}]})
        with pytest.raises(AssertionError) as failed:
            gw.start(timeout=20)
        assert gw.proc.returncode == 1
        assert f"error: queue {db} is locked by another process" in str(failed.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
