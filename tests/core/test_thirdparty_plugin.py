"""A third-party plugin installed for real with pip, listed by `pipeline plugins`, acting in the chain."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.mailpipe import run_pipeline
from tests.peers.sink import RecordingSink

from .helpers import make_message

PACKAGE = Path(__file__).resolve().parents[1] / "thirdparty" / "mailpipe-stamp"


@pytest.fixture(scope="module")
def stamp_installed():
    """pip-install the package into this test environment (and remove it afterwards)."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    res = subprocess.run([*pip, "install", "--no-deps", str(PACKAGE)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    yield
    subprocess.run([*pip, "uninstall", "-y", "mailpipe-stamp"], capture_output=True, timeout=120)


def test_listed_by_pipeline_plugins(stamp_installed):
    out = run_pipeline(None, "plugins", "--json").stdout
    import json

    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["stamp"]["distribution"] == "mailpipe-stamp"
    assert rows["stamp"]["hooks"] == ["accept"]
    assert "stamp" in run_pipeline(None, "plugins").stdout


def test_acts_in_the_chain_when_named_in_yaml(stamp_installed, mailpipe_factory):
    with RecordingSink("127.0.1.36") as sink:
        gw = mailpipe_factory({
            "hostname": "gw.test",
            "chain": [{"stamp": {"value": "checked", "refuse_subject": "forbidden"}},
                      {"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}}],
        })
        check = gw.cli("check").stdout
        assert "chain (in order): stamp -> smarthost" in check
        assert "accept         stamp" in check
        with gw:
            host, port = gw.address
            with smtplib.SMTP(host, port) as client:
                client.sendmail("a@example.org", ["b@example.net"], make_message("hello"))
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    client.sendmail("a@example.org", ["b@example.net"], make_message("forbidden words"))
                assert refused.value.smtp_code == 550
            got = sink.wait_for(1)
        assert b"\r\nX-Stamp: checked (client 127.0.0.1)\r\n" in got[0].data
        assert len(sink.messages) == 1
