"""A third-party plugin that raises or hangs inside a running gateway (docs/plugins.md, docs/operations.md).

The promise: "Any other exception, or running past the time bound, is a PluginFailure: logged with
your plugin's name and treated as a temporary failure. A broken plugin never loses or bounces mail."

The plugin is tests/thirdparty/mailpipe-faulty, installed for real with pip, but into a private
folder (``pip install --target``) that only these gateways see through ``PYTHONPATH``: the shared test
environment is left alone. It routes ``broken.test`` to itself and raises or hangs in the hooks
its options name.

The hook time bounds are fixed in the core (``deliver`` 30 minutes, ``authenticate`` 2 minutes,
``on_failure`` 30 s, the others 1 minute) and cannot be set from the configuration, so the hang is
tested in ``on_failure``, the shortest bound.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers.mailpipe import MailpipeProcess
from tests.peers.sink import RecordingSink

from .helpers import SMTP_TIMEOUT, make_message, queue_id_of, show, submit, wait_log, wait_states

PACKAGE = Path(__file__).resolve().parents[2] / "thirdparty" / "mailpipe-faulty"
ON_FAILURE_BOUND = 30  # core/chain.py DEFAULT_TIMEOUTS["on_failure"]


@pytest.fixture(scope="module")
def faulty_site(tmp_path_factory: pytest.TempPathFactory) -> str:
    """pip-install mailpipe-faulty into a private folder; return it (for PYTHONPATH)."""
    work = tmp_path_factory.mktemp("faulty-plugin")
    source = work / "src"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install",
                          "--no-deps", "--target", str(site), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return str(site)


@pytest.fixture
def faulty_gateway(mailpipe_factory, faulty_site: str) -> Callable[..., MailpipeProcess]:
    """``make(sink, **faulty_options)``: a gateway whose chain is faulty, smarthost (to ``sink``), retry."""

    def make(sink: RecordingSink, delivery: dict | None = None, **faulty: object) -> MailpipeProcess:
        path = os.pathsep.join(p for p in (faulty_site, os.environ.get("PYTHONPATH")) if p)
        return mailpipe_factory(chain_config(sink, delivery, {"domain": "broken.test", **faulty}),
                                env={"PYTHONPATH": path})

    return make


def chain_config(sink: RecordingSink, delivery: dict | None, faulty: dict | None) -> dict:
    chain: list[dict] = [{"faulty": faulty}] if faulty is not None else []
    chain += [{"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "none"}},
              {"retry": {"every": "1h", "expire_after": "1d"}}]
    return {"hostname": "gw.test", "delivery": delivery or {}, "chain": chain}


def test_plugin_listed_from_its_private_install(faulty_gateway):
    """The gateway finds the plugin through its entry point (the install works as any other)."""
    with RecordingSink("127.0.0.1") as sink:
        gw = faulty_gateway(sink)
        rows = {r["name"]: r for r in gw.cli_json("plugins")}
        assert rows["faulty"]["distribution"] == "mailpipe-faulty"
        assert "chain (in order): faulty -> smarthost -> retry" in gw.cli("check").stdout


def test_raise_in_accept_is_451_to_the_client_and_the_next_message_is_taken(faulty_gateway):
    """``accept`` raises: the client gets 451 4.3.0 naming the plugin, nothing is queued; the session goes on."""
    with RecordingSink("127.0.0.1") as sink:
        gw = faulty_gateway(sink, raise_in=["accept"], trigger="break-me")
        with gw:
            host, port = gw.address
            with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as client:
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    client.sendmail("alice@example.org", ["bob@remote.test"], make_message("break-me now"))
                assert refused.value.smtp_code == 451
                assert refused.value.smtp_error.decode() == (
                    "4.3.0 plugin 'faulty' failed in accept: RuntimeError: faulty plugin broke in accept")
                assert gw.cli_json("queue", "list") == []
                assert client.mail("alice@example.org")[0] == 250
                assert client.rcpt("bob@remote.test")[0] == 250
                code, text = client.data(make_message("an ordinary message"))
            assert code == 250
            queue_id = queue_id_of(text)
            wait_states(gw, queue_id, {"bob@remote.test": "delivered"})
            got = sink.wait_for(1)
            log = gw.log_text()
    assert len(got) == 1 and b"Subject: an ordinary message" in got[0].data
    assert "ERROR mailpipe.chain: plugin faulty raised in accept" in log
    assert "RuntimeError: faulty plugin broke in accept" in log


@pytest.mark.parametrize(("hook", "expected"), [
    ("route", {"x@broken.test": "deferred", "y@remote.test": "deferred"}),
    ("authenticate", {"x@broken.test": "deferred", "y@remote.test": "delivered"}),
    ("deliver", {"x@broken.test": "deferred", "y@remote.test": "delivered"}),
])
def test_raise_at_delivery_defers_and_loses_nothing(faulty_gateway, hook: str, expected: dict[str, str]):
    """A raise in ``route``/``authenticate``/``deliver``: 451 4.3.0 naming the plugin, kept queued, no bounce;
    other mail still leaves; once the plugin is taken out of the chain (SIGHUP), the kept mail is delivered."""
    with RecordingSink("127.0.0.1") as sink:
        gw = faulty_gateway(sink, raise_in=[hook])
        with gw:
            queue_id = submit(gw, ["x@broken.test", "y@remote.test"], "meets a broken plugin")
            shown = wait_states(gw, queue_id, expected)
            failed = [a for a in shown["attempts"] if a["outcome"] != "delivered"]
            assert {a["recipient"] for a in failed} == {r for r, s in expected.items() if s == "deferred"}
            for a in failed:
                assert (a["outcome"], a["code"], a["enhanced"], a["text"]) == (
                    "temporary", 451, "4.3.0",
                    f"plugin 'faulty' failed in {hook}: RuntimeError: faulty plugin broke in {hook}")
            assert f"ERROR mailpipe.chain: plugin faulty raised in {hook}" in gw.log_text()
            assert f"RuntimeError: faulty plugin broke in {hook}" in gw.log_text()

            other = submit(gw, ["z@remote.test"], "the gateway keeps serving")
            wait_states(gw, other, {"z@remote.test": "delivered"})
            listed = gw.cli_json("queue", "list")
            assert [m["id"] for m in listed] == [queue_id]

            gw.write_config(chain_config(sink, None, None))
            gw.proc.send_signal(signal.SIGHUP)
            wait_log(gw, "config.reloaded: ")
            gw.cli("queue", "retry", queue_id)
            wait_states(gw, queue_id, dict.fromkeys(expected, "delivered"))
        delivered = [r for m in sink.messages for r in m.rcpt_tos]
    assert sorted(delivered) == ["x@broken.test", "y@remote.test", "z@remote.test"]
    assert all(m.mail_from == "alice@example.org" for m in sink.messages)  # no bounce: nothing from <>


@pytest.mark.slow
def test_hang_past_the_time_bound_is_temporary_and_blocks_nothing(faulty_gateway):
    """``on_failure`` hangs: other mail is delivered meanwhile; after the 30 s bound the recipient is deferred
    with the core's ``default_retry`` and the log names the plugin."""
    with RecordingSink("127.0.0.1") as sink:
        gw = faulty_gateway(sink, {"default_retry": "10m"}, hang_in=["on_failure"])
        with gw:
            stuck = submit(gw, ["x@broken.test"], "hangs its plugin")
            other = submit(gw, ["y@remote.test"], "passes the hang")
            wait_states(gw, other, {"y@remote.test": "delivered"})
            assert show(gw, stuck)["attempts"] == []  # still waiting for the hung plugin
            shown = wait_states(gw, stuck, {"x@broken.test": "deferred"}, timeout=ON_FAILURE_BOUND + 20)
            log = gw.log_text()
            listed = gw.cli_json("queue", "list")
    (attempt,) = shown["attempts"]
    assert (attempt["outcome"], attempt["code"], attempt["enhanced"], attempt["text"]) == (
        "temporary", 451, "4.3.2", "faulty plugin: not today")
    # The hung on_failure gave no decision: the core's default retry (10m), not the retry plugin's 1h.
    next_attempt = shown["recipients"][0]["next_attempt"]
    assert 600 - 5 <= next_attempt - attempt["time"] <= 600 + 5
    assert f"ERROR mailpipe.chain: plugin faulty: on_failure timed out after {ON_FAILURE_BOUND}s" in log
    assert [m["id"] for m in listed] == [stuck]
    assert [m.rcpt_tos for m in sink.messages] == [["y@remote.test"]]
