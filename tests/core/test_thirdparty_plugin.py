"""A third-party plugin installed for real with pip, listed by `pipeline plugins`, acting in the chain.

It is installed into a private folder (``pip install --target``) that only the
``pipeline`` subprocesses of these tests see (PYTHONPATH): the shared test
environment is never changed.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers.mailpipe import MailpipeProcess, run_pipeline
from tests.peers.sink import RecordingSink

from .helpers import make_message

PACKAGE = Path(__file__).resolve().parents[1] / "thirdparty" / "mailpipe-stamp"


@pytest.fixture(scope="module")
def stamp_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """pip-install the package into a private target folder; the environment that makes `pipeline` see it."""
    work = tmp_path_factory.mktemp("stamp")
    source = work / "src"  # a copy: the build writes build/ and *.egg-info next to the sources
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    res = subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (target / "mailpipe_stamp").is_dir()
    pythonpath = os.pathsep.join(p for p in (str(target), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": pythonpath}


def test_not_installed_in_the_shared_environment() -> None:
    """The test environment itself has no stamp plugin: only the private folder does."""
    rows = {r["name"] for r in json.loads(run_pipeline(None, "plugins", "--json").stdout)}
    assert "stamp" not in rows


def test_listed_by_pipeline_plugins(stamp_env: dict[str, str]) -> None:
    """`pipeline plugins` finds the installed distribution's entry point and the hook it implements."""
    out = run_pipeline(None, "plugins", "--json", env=stamp_env).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["stamp"]["distribution"] == "mailpipe-stamp"
    assert rows["stamp"]["class"] == "mailpipe_stamp:StampPlugin"
    assert rows["stamp"]["hooks"] == ["accept"] and rows["stamp"]["version"] == "1.0.0"
    [line] = [ln for ln in run_pipeline(None, "plugins", env=stamp_env).stdout.splitlines() if ln.startswith("stamp ")]
    assert line.split() == ["stamp", "mailpipe-stamp", "1.0.0", "accept"]


def test_acts_in_the_chain_when_named_in_yaml(stamp_env: dict[str, str],
                                              mailpipe_factory: Callable[..., MailpipeProcess]) -> None:
    """Named first in the chain, it stamps a header on accepted mail and refuses a subject with 550."""
    with RecordingSink("127.0.1.36") as sink:
        gw = mailpipe_factory({
            "hostname": "gw.test",
            "chain": [{"stamp": {"value": "checked", "refuse_subject": "forbidden"}},
                      {"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}}],
        }, env=stamp_env)
        check = gw.cli("check").stdout
        assert "chain (in order): stamp -> smarthost" in check
        assert "accept         stamp" in check
        with gw:
            host, port = gw.address
            with smtplib.SMTP(host, port, timeout=10) as client:
                client.sendmail("a@example.org", ["b@example.net"], make_message("hello"))
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    client.sendmail("a@example.org", ["b@example.net"], make_message("forbidden words"))
                assert refused.value.smtp_code == 550
                assert refused.value.smtp_error.decode() == "5.7.1 subject contains 'forbidden'"
            got = sink.wait_for(1)
        assert b"\r\nX-Stamp: checked (client 127.0.0.1)\r\n" in got[0].data
        assert [m.rcpt_tos for m in sink.messages] == [["b@example.net"]]
