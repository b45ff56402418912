"""docs/configuration.md value syntax: ``${NAME:-default}``, durations ``1w`` and ``1h30m``, cron expressions.

The effective values are checked by what the gateway does with them (``pipeline check`` output, where
a deferred recipient's next attempt lands, when it expires), not by reading the parsed settings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.harness import SyncHarness
from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import submit, wait_outcome

WEEK = 7 * 86400.0
HOUR_AND_HALF = 5400.0

ENV_CONFIG = """\
hostname: "${{H4_GATEWAY_NAME:-gw.default.test}}"
listen: ["127.0.0.1:${{H4_SMTP_PORT:-{port}}}"]
state_dir: {state}
chain:
  - smarthost: {{server: "127.0.0.1:${{H4_ISP_PORT:-{sink}}}", tls: none}}
  - retry: {{every: "${{H4_RETRY_EVERY:-1h30m}}", expire_after: 1w}}
"""


@pytest.fixture
def no_h4_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the variables the config below names is set in this process (and so in its children)."""
    for name in ("H4_GATEWAY_NAME", "H4_SMTP_PORT", "H4_ISP_PORT", "H4_RETRY_EVERY"):
        monkeypatch.delenv(name, raising=False)


def write_env_config(workdir: Path, smtp_port: int, sink_port: int) -> Path:
    path = workdir / "mailpipe.yaml"
    path.write_text(ENV_CONFIG.format(port=smtp_port, sink=sink_port, state=workdir / "state"))
    return path


def test_env_default_used_when_unset_and_variable_when_set(workdir: Path, no_h4_env: None) -> None:
    """``${NAME:-default}`` gives the default when NAME is unset and NAME's value when it is set."""
    path = write_env_config(workdir, 2525, 2526)
    out = run_pipeline(path, "check").stdout.splitlines()
    assert out[1:3] == ["hostname: gw.default.test", "listen: 127.0.0.1:2525"]
    env = {"H4_GATEWAY_NAME": "gw.from-env.test", "H4_SMTP_PORT": "2600"}
    out = run_pipeline(path, "check", env=env).stdout.splitlines()
    assert out[1:3] == ["hostname: gw.from-env.test", "listen: 127.0.0.1:2600"]


def test_env_default_and_1h30m_take_effect_in_a_running_gateway(mailpipe_factory, workdir: Path,
                                                                 no_h4_env: None) -> None:
    """Defaults from ``${NAME:-default}`` reach the plugins: mail goes to the default smarthost port, and a
    deferral waits exactly ``1h30m`` (5400 s)."""
    with RecordingSink() as sink:
        sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"
        gw = mailpipe_factory({})
        gw.config_path.write_text(ENV_CONFIG.format(port=gw.address[1], sink=sink.port,
                                                    state=gw.config["state_dir"]))
        gw.start()
        delivered = submit(gw, ["carol@dest.test"])
        deferred = submit(gw, ["bob@dest.test"])
        wait_outcome(gw, deferred, "bob@dest.test")
        assert [m.rcpt_tos for m in sink.wait_for(1)] == [["carol@dest.test"]]
    assert gw.cli_json("queue", "show", delivered)["recipients"][0]["state"] == "delivered"
    shown = gw.cli_json("queue", "show", deferred)
    [attempt] = shown["attempts"]
    [rcpt] = shown["recipients"]
    assert (rcpt["state"], attempt["code"], attempt["enhanced"]) == ("deferred", 450, "4.2.0")
    assert rcpt["next_attempt"] - attempt["time"] == pytest.approx(HOUR_AND_HALF, abs=1.0)


def test_durations_1w_and_1h30m_are_a_week_and_ninety_minutes(workdir: Path) -> None:
    """``every: 1h30m`` retries 5400 s later; ``expire_after: 1w`` moves the last retry to arrival + 604800 s
    and expires the recipient there."""
    with RecordingSink() as sink:
        sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"
        h = SyncHarness(workdir, {
            "hostname": "gw.test", "state_dir": str(workdir / "state"), "listen": [f"127.0.0.1:{free_port()}"],
            "chain": [{"smarthost": {"server": f"127.0.0.1:{sink.port}", "tls": "none"}},
                      {"retry": {"every": "1h30m", "expire_after": "1w"}}],
        }, start=1_900_000_000.0)
        try:
            t0 = h.clock.now()
            mid = h.submit("alice@origin.test", ["bob@dest.test"])
            h.deliver()
            assert h.states(mid) == {"bob@dest.test": "deferred"}
            assert h.run(h.h.next_attempt(mid, "bob@dest.test")) == t0 + HOUR_AND_HALF
            h.clock.advance(WEEK - 600)  # ten minutes before the deadline, an administrator says "retry now"
            assert h.run(h.h.retry_now(mid)) == 1
            h.deliver()
            assert h.states(mid) == {"bob@dest.test": "deferred"}
            assert h.run(h.h.next_attempt(mid, "bob@dest.test")) == t0 + WEEK  # not t0 + 1w - 600 + 1h30m
            h.clock.advance(600)
            h.deliver()
            assert h.states(mid) == {"bob@dest.test": "expired"}
            [event] = h.events("message.expired")
            assert event.text == (f"{mid} from <alice@origin.test>: 1 recipient(s) expired, undelivered after "
                                  "7 days: bob@dest.test")
        finally:
            h.close()


@pytest.mark.parametrize("expression", ["61 * * * *", "every night", "0 */2 * *"])
def test_invalid_cron_expression_refused_by_check(workdir: Path, expression: str) -> None:
    """``pipeline check`` refuses a wrong ``delivery.schedule`` entry: exit 2, file, key path, the expression."""
    path = workdir / "mailpipe.yaml"
    path.write_text(f"state_dir: {workdir / 'state'}\ndelivery:\n  send_immediately: false\n"
                    f"  schedule: [\"0 */2 * * *\", \"{expression}\"]\nchain:\n  - direct: {{}}\n")
    res = run_pipeline(path, "check", check=False)
    assert res.returncode == 2, res
    assert res.stdout == ""
    assert res.stderr == (f"error: {path}: delivery.schedule: expected a cron expression such as "
                          f"'0 */2 * * *', got '{expression}'\n")


def test_valid_cron_expressions_pass_check(workdir: Path) -> None:
    """The documented examples of ``delivery.schedule`` pass ``pipeline check`` (exit 0)."""
    path = workdir / "mailpipe.yaml"
    path.write_text(f"state_dir: {workdir / 'state'}\ndelivery:\n  send_immediately: false\n"
                    "  schedule: [\"0 */2 * * *\", \"* 22-23,0-5 * * *\"]\nchain:\n  - direct: {}\n")
    res = run_pipeline(path, "check")
    assert res.stdout.splitlines()[0] == f"configuration {path}: OK"
