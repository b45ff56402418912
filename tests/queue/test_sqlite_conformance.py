"""The sqlite queue backend runs the queue conformance suite; the suite ships with the installed package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailpipe.core.testing.queue import QueueConformance, QueueFactory
from mailpipe.plugins.sqlite_queue import SqliteQueue

ROOT = Path(__file__).resolve().parents[2]
HISTORY_DAYS = 7.0


class TestSqliteQueue(QueueConformance):
    """``SqliteQueue`` keeps every promise of the queue interface."""

    retention = HISTORY_DAYS * 86400.0
    shares_store = True  # two gateways may open one queue file (tests/robustness/test_concurrent_schedulers.py)

    @pytest.fixture
    def make_queue(self, tmp_path: Path) -> QueueFactory:
        path = tmp_path / "queue.sqlite3"
        return lambda: SqliteQueue(path, history_days=HISTORY_DAYS)

    @pytest.fixture
    def make_full_queue(self, small_disk: Path) -> QueueFactory:
        path = small_disk / "queue.sqlite3"
        return lambda: SqliteQueue(path, history_days=HISTORY_DAYS)


def test_the_suite_is_importable_from_the_installed_package(tmp_path: Path) -> None:
    """``import mailpipe.core.testing.queue`` works in an isolated interpreter (no checkout on sys.path)."""
    code = "import mailpipe.core.testing.queue as m; print(m.QueueConformance.__name__)"
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "QueueConformance"


def test_the_suite_is_in_the_package_list(tmp_path: Path) -> None:
    """setup.py's package list (what a wheel contains) has mailpipe.core.testing; nothing is built or installed."""
    code = ("import runpy, setuptools\n"
            "seen = {}\n"
            "setuptools.setup = lambda **kw: seen.update(kw)\n"
            "runpy.run_path('setup.py')\n"
            "print('\\n'.join(seen['packages']))\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "mailpipe.core.testing" in out.stdout.split()
