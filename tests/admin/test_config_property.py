"""Property: whatever is done to a configuration file, ``pipeline check`` never ends in a traceback.

Hypothesis mangles a configuration that uses every built-in plugin and every file option
(keys mistyped, values of other kinds, keys removed, random YAML text). Whatever comes out,
``check`` (run in this process, so each example is quick) either says OK (exit 0) or refuses
with exit status 2 and only ``error: <file>: ...`` lines, one per problem, none in pydantic's
words; ``serve`` refuses the same file with the same lines. A mistyped key is always refused,
and the line names it.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.peers.certs import TestPKI

from .helpers import escaped, invoke, write

PYDANTIC_WORDS = ("Input should", "Value error", "Field required", "Extra inputs", "validation error",
                  "unable to parse")
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
Loc = tuple[Any, ...]


def full_config(tmp: Path, pki: TestPKI) -> dict[str, Any]:
    """A valid configuration using every top-level key, every built-in plugin and every kind of file option."""
    ca, cert, key = str(pki.ca_file), str(pki.cert_file), str(pki.key_file)
    user = {"username": "admin", "password_hash": HASH}
    return {
        "hostname": "gw.test", "state_dir": str(tmp / "state"),
        "listen": ["127.0.0.1:2525", {"address": "127.0.0.1:2465", "tls": "implicit", "cert": cert, "key": key}],
        "relay": {"networks": ["127.0.0.0/8", "::1/128"], "users": [dict(user)]},
        "intake": {"max_message_size": "10M", "max_recipients": 100, "timeout": "5m"},
        "queue": {"sqlite": {"path": "queue.sqlite3", "busy_timeout": "10s"}},
        "delivery": {"send_immediately": True, "schedule": ["0 */2 * * *"], "port": 25, "timeout": "60s",
                     "concurrency": 10},
        "accounts": [{"address": "alice@example.org", "username": "alice", "password": "pw",
                      "pop3": {"server": "pop.isp.test", "port": 995, "ca_file": ca}}],
        "chain": [
            {"smarthost": {"server": ["smtp.isp.test:587"], "ca_file": ca, "domains": ["example.com"],
                           "auth": {"mode": "login", "username": "gw", "password": "pw"}}},
            {"direct": {"dns_servers": ["127.0.0.1:53"], "tls": "opportunistic"}},
            {"retry": {"every": "15m", "expire_after": "2d", "backoff": {"max": "4h"}}},
            {"console": {"listen": "127.0.0.1:8025", "users": [dict(user)], "tls": True, "cert": cert, "key": key}},
            {"metrics": {"listen": "127.0.0.1:9125"}},
            {"alerts": {"to": "postmaster", "rules": {"deferred": 5, "oldest_message": "4h"}}},
        ],
        "log": {"level": "info", "format": "json"},
    }


def places(tree: Any, loc: Loc = ()) -> list[Loc]:
    """Every key path in ``tree`` (mappings' keys and lists' items), the tree itself first."""
    found = [loc]
    if isinstance(tree, dict):
        for k, v in tree.items():
            found += places(v, loc + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found += places(v, loc + (i,))
    return found


def at(tree: Any, loc: Loc) -> Any:
    for part in loc:
        tree = tree[part]
    return tree


def copy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [copy(v) for v in tree]
    return tree


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
                    st.text(string.printable, max_size=12), st.sampled_from(["5 minutez", "${MAILPIPE_NOPE}", "",
                                                                              "yes", "-1", "1h30m", "10M", "*"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(string.ascii_lowercase, min_size=1,
                                                                               max_size=8), inner, max_size=3)),
                      max_leaves=6)


@st.composite
def mangled(draw: st.DrawFn, base: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A mangled copy of ``base``, and the key path of a mistyped key when one was made (always refused)."""
    tree = copy(base)
    for _ in range(draw(st.integers(0, 3))):
        loc = draw(st.sampled_from(places(tree)[1:]))
        parent, last = at(tree, loc[:-1]), loc[-1]
        if draw(st.booleans()):
            parent[last] = draw(values)
        elif isinstance(parent, dict):
            del parent[last]
    typo: str | None = None
    known = set(places(base))  # a key of the original file, so its mapping is an options model
    keys = [loc for loc in places(tree)[1:] if loc in known and isinstance(loc[-1], str)
            and isinstance(at(tree, loc[:-1]), dict) and len(at(tree, loc[:-1])) > 1
            and not (loc[:1] == ("chain",) and len(loc) == 3)]
    if keys and draw(st.booleans()):  # last, so that no other change takes it away again
        loc = draw(st.sampled_from(keys))
        parent, last = at(tree, loc[:-1]), loc[-1]
        new = last + draw(st.text(string.ascii_lowercase, min_size=1, max_size=2))
        if new not in parent:
            parent[new] = parent.pop(last)
            typo = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[:-1] + (new,)).lstrip(".")
    return tree, typo


def assert_refused_cleanly(path: Path, stderr: str) -> None:
    lines = stderr.splitlines()
    assert lines, "exit 2 says why"
    assert all(line.startswith(f"error: {path}: ") for line in lines), stderr
    assert len(set(lines)) == len(lines), stderr
    assert "Traceback" not in stderr
    for word in PYDANTIC_WORDS:
        assert word not in stderr, (word, stderr)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("mangled")
    config = full_config(tmp, pki)
    path = write(tmp / "mailpipe.yaml", config)
    res = invoke("check", "-c", str(path))
    assert res.exit_code == 0, res.output
    return path, config


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_a_mangled_configuration_is_ok_or_refused_cleanly(base: tuple[Path, dict[str, Any]], data: st.DataObject,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, config = base
    monkeypatch.delenv("MAILPIPE_NOPE", raising=False)
    tree, typo = data.draw(mangled(config))
    write(path, tree)
    res = invoke("check", "-c", str(path))
    assert escaped(res) is None, res.exception
    assert res.exit_code in (0, 2), (res.exit_code, res.output)
    if res.exit_code == 0:
        assert typo is None, f"{typo} was accepted"
        assert "OK" in res.stdout
        return
    assert_refused_cleanly(path, res.stderr)
    if typo is not None:
        assert any(f": {typo}: unknown key" in line for line in res.stderr.splitlines()), (typo, res.stderr)
    served = invoke("serve", "-c", str(path))
    assert (served.exit_code, served.stderr) == (2, res.stderr)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(string.printable, max_size=200))
def test_any_text_as_a_configuration_file(base: tuple[Path, dict[str, Any]], text: str) -> None:
    path, _ = base
    write(path, text)
    res = invoke("check", "-c", str(path))
    assert escaped(res) is None, res.exception
    assert res.exit_code in (0, 2), (res.exit_code, res.output)
    if res.exit_code == 2:
        assert_refused_cleanly(path, res.stderr)


@pytest.mark.parametrize("value", [9.223372036854776e+18, 1e300, -1e30])
def test_a_number_too_big_for_a_whole_number_is_refused_in_plain_words(base: tuple[Path, dict[str, Any]],
                                                                       value: float) -> None:
    """Found by the property above (CI, session 7): a float beyond a 64-bit integer for ``delivery.port`` made
    pydantic say "unable to parse input string as an integer, exceeded maximum size"."""
    path, config = base
    tree = copy(config)
    tree["delivery"]["port"] = value
    write(path, tree)
    res = invoke("check", "-c", str(path))
    assert res.exit_code == 2, res.output
    assert_refused_cleanly(path, res.stderr)
    assert f"error: {path}: delivery.port: expected a whole number" in res.stderr, res.stderr
