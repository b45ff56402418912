"""``pipeline rules test``: which rules match a message file and what would happen; and bad rules refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.peers.mailpipe import run_pipeline

from .helpers import mail

CONFIG = {
    "state_dir": "state",
    "chain": [
        {"rules": {"rules": [
            {"name": "no executables", "match": {"attachment_name": r"(?i)\.(exe|scr|js|vbs|bat)$"},
             "action": {"reject": "554 5.7.1 executable attachments are not accepted"}},
            {"name": "big mail via the second ISP", "match": {"size_over": "10M"},
             "action": {"route_via": "smarthost-big"}},
            {"match": {"sender": r"(?i)@ex-employee\.example$"}, "action": "hold"},
            {"name": "confidential", "match": {"header": {"Subject": r"(?i)\[confidential\]"}},
             "action": [{"add_header": {"X-Classification": "confidential"}}, {"bcc": "audit@corp.local"}]},
            {"name": "partners", "match": {"recipient": r"@partner\.example$"},
             "action": {"route_via": "smarthost-big"}},
        ]}},
        {"smarthost": {"server": "smtp.isp.example"}},
        {"smarthost": {"name": "smarthost-big", "server": "big.isp.example"}},
    ],
}


@pytest.fixture
def config(workdir: Path) -> Path:
    path = workdir / "mailpipe.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return path


def test_rules_test_shows_matches_and_outcome(config: Path, workdir: Path) -> None:
    eml = workdir / "message.eml"
    eml.write_bytes(mail(subject="[Confidential] plans").replace(b"\r\n", b"\n"))  # as a mail client saves it
    out = run_pipeline(config, "rules", "test", str(eml), "--from", "a@corp.example", "--to", "b@partner.example",
                       "--to", "c@other.example").stdout
    assert "  -     no executables: reject 554 5.7.1 executable attachments are not accepted" in out
    assert "  MATCH confidential: add_header X-Classification: confidential; bcc audit@corp.local" in out
    assert "  outcome: accept" in out
    assert "  recipients: b@partner.example, c@other.example, audit@corp.local" in out
    assert "    b@partner.example: route_via smarthost-big (rule 'partners')" in out
    assert "    c@other.example: the rest of the chain" in out

    eml.write_bytes(mail(sender="joe@ex-employee.example", attachments=[("run.js", b"alert(1)", "text/javascript")]))
    rows = json.loads(run_pipeline(config, "rules", "test", str(eml), "--from", "joe@ex-employee.example",
                                   "--to", "b@remote.example", "--json").stdout)
    [rules] = rows
    assert rules["entry"] == "rules"
    assert rules["outcome"] == "reject: 554 5.7.1 executable attachments are not accepted"
    assert [r["rule"] for r in rules["rules"] if r["matched"]] == ["no executables"]  # reject ends the walk

    eml.write_bytes(mail(sender="joe@ex-employee.example"))
    rows = json.loads(run_pipeline(config, "rules", "test", str(eml), "--from", "joe@ex-employee.example",
                                   "--to", "b@remote.example", "--json").stdout)
    assert rows[0]["outcome"] == "hold (queued held until an administrator releases it): rule 'rule 3'"


@pytest.mark.parametrize("rules, error", [
    ([{"match": {"sender": "(?<=x)a"}, "action": "hold"}],
     "chain[0].rules.rules[0].match.sender: not a usable regular expression"),
    ([{"action": {"reject": "554 4.7.1 wrong class"}}],
     "chain[0].rules.rules[0].action[0]: the enhanced code 4.7.1 does not match the reply code 554"),
    ([{"action": {"reject": "250 fine"}}], "chain[0].rules.rules[0].action[0]: expected a reply such as"),
    ([{"action": {"route_via": "nowhere"}}], "rules[0].action[0].route_via: no chain entry is called 'nowhere'"),
    ([{"action": {"add_header": {"Bad Name": "x"}}}], "expected a header field name"),
    ([{"action": {"bcc": "not an address"}}], "expected an email address"),
    ([{"match": {"colour": "red"}, "action": "hold"}], "chain[0].rules.rules[0].match.colour: unknown key"),
    ([{"match": {"any": []}, "action": "hold"}], "chain[0].rules.rules[0].match.any: expected at least one match"),
    ([{"match": {}}], "chain[0].rules.rules[0].action: required, but not given"),
])
def test_bad_rules_refused_with_key_path(workdir: Path, rules: list, error: str) -> None:
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump({"state_dir": "state", "chain": [{"rules": {"rules": rules}},
                                                                     {"smarthost": {"server": "a.example"}}]}))
    res = run_pipeline(path, "check", check=False)
    assert res.returncode == 2
    assert error in res.stderr, res.stderr


def test_session_matches_in_the_dry_run(workdir: Path) -> None:
    """``--client`` and ``--auth-user`` give the session the client and login matches look at."""
    path = workdir / "session.yaml"
    path.write_text(yaml.safe_dump({"state_dir": "state", "chain": [{"rules": {"rules": [
        {"name": "outside, not logged in",
         "match": {"not": {"any": [{"client": "10.0.0.0/8"}, {"authenticated": True}]}},
         "action": {"reject": "554 5.7.1 log in first"}},
        {"name": "interns", "match": {"auth_user": "^intern-"}, "action": {"add_header": {"X-Intern": "yes"}}},
    ]}}, {"smarthost": {"server": "a.example"}}]}))
    eml = workdir / "m.eml"
    eml.write_bytes(mail())

    def outcome(*args: str) -> dict:
        out = run_pipeline(path, "rules", "test", str(eml), "--to", "b@remote.example", "--json", *args).stdout
        return json.loads(out)[0]

    assert outcome("--client", "192.0.2.7")["outcome"] == "reject: 554 5.7.1 log in first"
    assert outcome("--client", "10.1.2.3")["outcome"] == "accept"
    row = outcome("--client", "192.0.2.7", "--auth-user", "intern-kim")
    assert row["outcome"] == "accept" and row["header changes"] == ["add X-Intern: yes"]
