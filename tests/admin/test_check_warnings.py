"""``pipeline check`` warns about configurations that are valid but cannot deliver, and ``serve`` logs the same.

An empty file, a chain of only ``retry``, ``direct`` before a ``smarthost`` with ``domains:``:
each passes validation (exit 0) but gets a ``warning:`` line naming the hook with no
implementation or the chain entry that never sees mail and the one that takes it first.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.peers.mailpipe import MailpipeProcess, run_pipeline
from tests.peers.net import wait_until

from .helpers import base_config, write

SMARTHOST = {"smarthost": {"server": "smtp.isp.test", "domains": ["example.com"]}}
RETRY = {"retry": {"every": "15m", "expire_after": "2d"}}


def test_an_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.yaml", "")
    res = run_pipeline(path, "check")
    assert res.stderr.splitlines() == [
        f"warning: {path}: chain is empty: no plugin routes or delivers mail, so every message would wait in the "
        "queue (add smarthost or direct to chain)"]
    assert f"configuration {path}: OK (1 warning(s))" in res.stdout


def test_a_chain_of_only_retry(tmp_path: Path) -> None:
    path = write(tmp_path / "retry.yaml", {"state_dir": str(tmp_path / "state"), "chain": [RETRY]})
    res = run_pipeline(path, "check")
    assert res.stderr.splitlines() == [
        f"warning: {path}: chain: no plugin implements the route hook, so no recipient can be routed and every "
        "message would wait in the queue (add smarthost or direct to chain)"]


def test_direct_before_a_smarthost_with_domains(tmp_path: Path) -> None:
    path = write(tmp_path / "order.yaml", {"state_dir": str(tmp_path / "state"),
                                           "chain": [{"direct": {}}, SMARTHOST, RETRY]})
    res = run_pipeline(path, "check")
    warning = (f"{path}: chain[1] smarthost never sees any mail: chain[0] direct routes every recipient before it "
               "(put smarthost first)")
    assert res.stderr.splitlines() == [f"warning: {warning}"]
    assert json.loads(run_pipeline(path, "check", "--json").stdout)["warnings"] == [warning]
    fixed = write(tmp_path / "fixed.yaml", {"state_dir": str(tmp_path / "state"),
                                            "chain": [SMARTHOST, {"direct": {}}, RETRY]})
    res = run_pipeline(fixed, "check")
    assert res.stderr == "" and json.loads(run_pipeline(fixed, "check", "--json").stdout)["warnings"] == []


def test_serve_logs_the_warnings_and_runs(tmp_path: Path) -> None:
    config = base_config(tmp_path, [{"direct": {}}, SMARTHOST, RETRY])
    gw = MailpipeProcess(tmp_path / "gw", config)
    with gw:
        wait_until(lambda: "gateway.started" in gw.log_text(), 10, "the startup line")
        # The warnings follow the start (with workers: once every worker has started), not before it.
        wait_until(lambda: "WARNING mailpipe.serve:" in gw.log_text(), 10, "the check warnings in the log",
                   gw.log_text)
        assert "chain[1] smarthost never sees any mail: chain[0] direct routes every recipient" in gw.log_text()
    assert gw.proc is not None and gw.proc.returncode == 0
