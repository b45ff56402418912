"""Every ``pipeline`` command written in README.md and docs/*.md runs as written.

The commands are read from the documents themselves: lines of ``sh``/``bash`` blocks that run
``pipeline`` (after ``NAME=value`` settings; a ``# comment`` or a redirection ends them) and
``$ pipeline ...`` lines of transcripts. Each runs as a real process in a sandbox that stands
in for the reader's machine: the repository's ``examples/`` at hand, a state folder with a queue
holding one message (``$MAILPIPE_STATE_DIR``), the secrets the examples ask for in the
environment, a local DNS server for the examples that name one, the third-party ``stamp`` plugin
of docs/plugins.md installed, ``/etc/mailpipe/mailpipe.yaml`` a copy of an example and a
``mailpipe.yaml`` written from the document's YAML block just before the command. Each must exit 0
without a traceback. Two stand-ins: ``serve`` is run as ``check`` (the same validation; serving
would not end), and a literal ``ID`` is the queued message's ID.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailpipe.core.intake.auth import hash_password
from tests.core.test_thirdparty_plugin import stamp_env  # noqa: F401 - the fixture, installed once per module
from tests.peers.fixtures import DnsmasqFactory
from tests.peers.mailpipe import pipeline_cmd

from .helpers import store_messages, write

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
ENDS = {">", ">>", "|", "&&", ";", "2>", "2>&1"}


@dataclass(frozen=True)
class DocCommand:
    """One command of a document: where it is, its words, settings before it, and the YAML block above it."""

    doc: Path
    line: int
    env: dict[str, str]
    argv: list[str]
    yaml_before: str | None

    @property
    def name(self) -> str:
        return f"{self.doc.name}:{self.line}:{' '.join(self.argv[:3])}"


def parse(text: str) -> tuple[dict[str, str], list[str]] | None:
    """``NAME=value ... pipeline ARGS # comment`` -> (settings, [pipeline, ARGS]); None for other commands."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    env: dict[str, str] = {}
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words or words[0] != "pipeline":
        return None
    cut = next((i for i, w in enumerate(words) if w in ENDS), len(words))
    return env, words[:cut]


def commands() -> list[DocCommand]:
    found = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        yaml_before: str | None = None
        for block in BLOCK.finditer(text):
            lang, body = block.group(1), block.group(2)
            first_line = text.count("\n", 0, block.start()) + 2
            if lang == "yaml":
                yaml_before = body
                continue
            for n, line in enumerate(body.splitlines()):
                if lang in ("sh", "bash"):
                    parsed = parse(line)
                elif lang == "" and line.startswith("$ "):
                    parsed = parse(line[2:])
                else:
                    parsed = None
                if parsed is not None:
                    found.append(DocCommand(doc, first_line + n, parsed[0], parsed[1], yaml_before))
    return found


COMMANDS = commands()


def test_the_documents_have_commands() -> None:
    names = {c.doc.name for c in COMMANDS}
    assert {"README.md", "operations.md", "direct.md", "retry-and-logs.md", "plugins.md"} <= names
    assert any(c.argv[1:3] == ["queue", "list"] for c in COMMANDS)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A folder standing in for the reader's: examples/, etc/mailpipe.yaml, a state folder with one message."""
    home = tmp_path_factory.mktemp("reader")
    (home / "examples").symlink_to(ROOT / "examples")
    shutil.copy(ROOT / "examples" / "relay-to-smarthost.yaml", home / "etc-mailpipe.yaml")
    (home / "message.eml").write_bytes(b"From: a@corp.example\r\nTo: b@partner.example\r\nSubject: report\r\n"
                                       b"Message-ID: <docs@corp.example>\r\n\r\nHello.\r\n")  # pipeline rules test
    config = write(home / "queue.yaml", {"state_dir": str(home / "state")})
    [mid] = store_messages(config, [["bob@example.net"]])
    return home, mid


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_runs_as_written(command: DocCommand, sandbox: tuple[Path, str], stamp_env: dict[str, str],  # noqa: F811
                         dnsmasq_factory: DnsmasqFactory, request: pytest.FixtureRequest) -> None:
    home, mid = sandbox
    dns = dnsmasq_factory(["local=/test/", "local=/example.com/", "local=/example.net/"])
    secret = hash_password("docs-secret")
    env = {**stamp_env, "HOME": str(home), "MAILPIPE_STATE_DIR": str(home / "state"),
           "MAILPIPE_DNS_SERVER": f"{dns.address}:{dns.port}", "MAILPIPE_CONSOLE_HASH": secret,
           "MAILPIPE_USER_HASH": secret, "ISP_USERNAME": "gateway", "ISP_PASSWORD": "docs-secret",
           "ALICE_PASSWORD": "docs-secret", "BOB_PASSWORD": "docs-secret", "OAUTH_USER": "gateway",
           "OAUTH_TOKEN": "docs-token", **command.env}
    argv = ["check" if w == "serve" else mid if w == "ID" else w for w in command.argv[1:]]
    argv = [str(home / "etc-mailpipe.yaml") if w == "/etc/mailpipe/mailpipe.yaml" else w for w in argv]
    if "/etc/mailpipe/postgres.yaml" in argv:  # the same node on a real PostgreSQL (docs/scale-out.md)
        cluster = request.getfixturevalue("postgres")
        target = home / "etc-postgres.yaml"
        if not target.exists():
            write(target, {"state_dir": str(home / "pg-state"),
                           "queue": {"postgres": {"dsn": cluster.create_database()}}})
        argv = [str(target) if w == "/etc/mailpipe/postgres.yaml" else w for w in argv]
    if "mailpipe.yaml" in argv:
        assert command.yaml_before is not None, f"{command.name}: no YAML block above it for mailpipe.yaml"
        (home / "mailpipe.yaml").write_text(command.yaml_before)
    answers = "docs-secret\ndocs-secret\n" if argv[:1] == ["hash-password"] else None
    res = subprocess.run(pipeline_cmd(*argv), capture_output=True, text=True, timeout=120, env=env, cwd=home,
                         input=answers)
    assert res.returncode == 0, (command.name, argv, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    if argv[:1] == ["check"]:
        assert ": OK" in res.stdout, res.stdout
