"""The shipped systemd unit: its own user, a state folder, hardening, the journal; systemd accepts it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "examples" / "systemd" / "mailpipe.service"
SYSUSERS = UNIT.with_name("mailpipe.sysusers")


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_runs_pipeline_hardened_as_its_own_user() -> None:
    d = directives()
    assert d["User"] == ["mailpipe"] and d["Group"] == ["mailpipe"]
    assert SYSUSERS.read_text().splitlines()[-1].split()[:2] == ["u", "mailpipe"]
    assert d["StateDirectory"] == ["mailpipe"] and d["Environment"] == ["MAILPIPE_STATE_DIR=/var/lib/mailpipe"]
    assert d["ExecStartPre"] == ["/opt/mailpipe/bin/pipeline check -c /etc/mailpipe/mailpipe.yaml"]
    assert d["ExecStart"] == ["/opt/mailpipe/bin/pipeline serve -c /etc/mailpipe/mailpipe.yaml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"] and d["KillSignal"] == ["SIGTERM"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes",
                       "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "SystemCallFilter": "@system-service",
                       "StandardError": "journal", "SyslogIdentifier": "mailpipe"}.items():
        assert d[key] == [value], key


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    pipeline = Path(sys.executable).with_name("pipeline")
    unit = tmp_path / "mailpipe.service"
    unit.write_text(UNIT.read_text().replace("/opt/mailpipe/bin/pipeline", str(pipeline)))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert [line for line in (res.stdout + res.stderr).splitlines() if "mailpipe.service" in line] == []
