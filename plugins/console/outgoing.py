"""The "Outgoing Mail" page: every setting of the seed page as a form field, saved into the YAML.

Each field reads its value from the config file as written (``${ENV}``
references are shown, not resolved). On Save only the fields whose value
changed are written back, into the round-trip document (comments and order
kept); the result is validated by ``load_config`` — the same pydantic models
as at start — from a temporary file, and only a valid file replaces the
original (atomically), after which the running gateway applies it
(``Gateway.reload``). A refused value is shown next to its field and nothing
is written. Undo puts back the file as it was before the last Save and
applies it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from mailpipe.core.config import load_config
from mailpipe.core.durations import format_duration
from mailpipe.core.errors import ConfigError
from mailpipe.core.settings import DeliverySettings

from .yamlfile import RoundTrip, digest, replace_atomic, temp_beside

AUTH_MODES = {"login": "Log on using", "pop-before-smtp": "Wait until logged into Internet Mail Account",
              "sender-account": "Log on using sender's Internet Mail Account settings"}
SEND_VIA = {"smarthost": "Send messages through ISP's mail server",
            "direct": "Send messages direct (DNS lookup of each recipient's domain)",
            "both": "ISP's mail server first (for its domains), direct for the rest"}
_SECRET_KEYS = ("username", "password", "token", "token_command", "oauth2")


@dataclass
class Field:
    """One form field: its name, label, help text (from the seed page) and the YAML key it edits."""

    name: str
    label: str
    help: str
    key: str
    kind: str = "text"  # text | checkbox | choice | lines | password
    choices: dict[str, str] = field(default_factory=dict)


FIELDS: list[Field] = [
    Field("send_via", "Outgoing mail", "Send through your ISP's mail server or directly to each recipient's "
          "mail server.", "chain", "choice", SEND_VIA),
    Field("server", "Server", "The name or IP address of your ISP's SMTP mail server (host or host:port; "
          "several, comma-separated, are tried in order).", "chain[smarthost].server"),
    Field("auth_required", "Outgoing server (SMTP) requires authentication", "Enable if your ISP requires "
          "authentication when sending, then select the method.", "chain[smarthost].auth.mode", "checkbox"),
    Field("auth_mode", "Authentication method", "Log on using an account name and password; wait until "
          "logged into the first Internet Mail Account (POP-before-SMTP); or log on with the sender's own "
          "Internet Mail Account.", "chain[smarthost].auth.mode", "choice", AUTH_MODES),
    Field("username", "Account name", "For \u201cLog on using\u201d.", "chain[smarthost].auth.username"),
    Field("password", "Password", "For \u201cLog on using\u201d. Never shown; leave empty to keep the "
          "current one.", "chain[smarthost].auth.password", "password"),
    Field("dns_servers", "Resolve destination's domain using DNS", "The IP address of your ISP's DNS server "
          "(host or host:port, comma-separated; empty: the system's resolver).", "chain[direct].dns_servers"),
    Field("hostname", "Local host name", "Enter your domain name (used in EHLO, Received and reports).",
          "hostname"),
    Field("send_immediately", "Send any waiting messages immediately", "Send messages as they become "
          "available instead of waiting for the Schedule.", "delivery.send_immediately", "checkbox"),
    Field("schedule", "Schedule", "When sending may start if not immediately: cron expressions, one per line "
          "(\u201c0 */2 * * *\u201d: every second hour).", "delivery.schedule", "lines"),
    Field("retry_every", "Retry failed messages every", "A message that could not be sent is not eligible "
          "for sending again until this time has elapsed (30s, 15m, 4h).", "chain[retry].every"),
    Field("expire_after", "Delete failed messages after", "How long a message may stay in the queue before "
          "it expires and the sender gets a bounce (2d).", "chain[retry].expire_after"),
    Field("port", "Port", "The port to connect to when sending; should be 25 unless the receiving server "
          "listens elsewhere (the smarthost's own port, if set, wins).", "delivery.port"),
    Field("timeout", "Timeout", "How long to wait for a response from the destination server (60s).",
          "delivery.timeout"),
]
FIELD_NAMES = [f.name for f in FIELDS]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | CommentedSeq):
        return ", ".join(str(v) for v in value)
    return str(value)


def _duration_text(value: Any, default: float) -> str:
    if value is None:
        return format_duration(default)
    return _text(value)


def chain_entry(doc: Any, name: str) -> tuple[int, Any] | None:
    """(index, options) of the chain entry for plugin ``name``; options may be None (``- direct``)."""
    for i, entry in enumerate(doc.get("chain") or []):
        if isinstance(entry, str) and entry == name:
            return i, None
        if isinstance(entry, dict) and name in entry:
            return i, entry[name]
    return None


def plugin_options(doc: Any, name: str) -> Any:
    """The options mapping of chain entry ``name`` as written ({} when absent or bare)."""
    found = chain_entry(doc, name)
    return found[1] if found and isinstance(found[1], dict) else {}


def form_values(doc: Any) -> dict[str, str]:
    """The form's values as strings, from the YAML as written (defaults where a key is absent)."""
    sh, direct, retry = chain_entry(doc, "smarthost"), chain_entry(doc, "direct"), plugin_options(doc, "retry")
    via = "both" if sh and direct else ("smarthost" if sh else "direct")
    sh_opts = plugin_options(doc, "smarthost")
    auth = sh_opts.get("auth") or {}
    mode = _text(auth.get("mode")) or "none"
    delivery = doc.get("delivery") or {}
    defaults = DeliverySettings()
    schedule = delivery.get("schedule")
    return {
        "send_via": via,
        "server": _text(sh_opts.get("server")),
        "auth_required": "false" if mode == "none" else "true",
        "auth_mode": mode if mode in AUTH_MODES else "login",
        "username": _text(auth.get("username")),
        "password": "",
        "dns_servers": _text(plugin_options(doc, "direct").get("dns_servers")),
        "hostname": _text(doc.get("hostname")),
        "send_immediately": _text(delivery.get("send_immediately", defaults.send_immediately)),
        "schedule": "\n".join(str(s) for s in schedule) if isinstance(schedule, list) else _text(schedule),
        "retry_every": _duration_text(retry.get("every"), 900.0),
        "expire_after": _duration_text(retry.get("expire_after"), 5 * 86400.0),
        "port": _text(delivery.get("port", defaults.port)),
        "timeout": _duration_text(delivery.get("timeout"), defaults.timeout),
    }


def submitted(form: dict[str, Any]) -> dict[str, str]:
    """The posted form as the same strings ``form_values`` gives (checkboxes: true/false)."""
    out = {}
    for f in FIELDS:
        raw = form.get(f.name)
        if f.kind == "checkbox":
            out[f.name] = "true" if raw in ("on", "true", "1") else "false"
        elif f.kind == "lines":
            out[f.name] = "\n".join(line.strip() for line in str(raw or "").splitlines() if line.strip())
        else:
            out[f.name] = str(raw or "").strip()
    return out


def _scalar(text: str) -> Any:
    """A typed value for the YAML: numbers stay numbers, ``${ENV}`` and durations stay strings."""
    return int(text) if re.fullmatch(r"\d+", text) else text


def _list(text: str) -> CommentedSeq:
    seq = CommentedSeq(item.strip() for item in text.split(",") if item.strip())
    seq.fa.set_flow_style()
    return seq


def _section(doc: Any, key: str) -> Any:
    if not isinstance(doc.get(key), dict):
        doc[key] = CommentedMap()
    return doc[key]


def _writable_options(doc: Any, name: str) -> Any:
    """The options mapping of chain entry ``name``, made a mapping if written as a bare name."""
    found = chain_entry(doc, name)
    if found is None:
        return None
    i, opts = found
    if not isinstance(opts, dict):
        opts = CommentedMap()
        doc["chain"][i] = CommentedMap([(name, opts)])
    return opts


def _set_chain(doc: Any, via: str, server: str) -> None:
    """Make the chain have a smarthost entry, a direct entry or both (smarthost first)."""
    if not isinstance(doc.get("chain"), list):
        doc["chain"] = CommentedSeq()
    chain = doc["chain"]
    want_sh, want_direct = via in ("smarthost", "both"), via in ("direct", "both")
    sh, direct = chain_entry(doc, "smarthost"), chain_entry(doc, "direct")
    if not want_sh and sh:
        del chain[sh[0]]
    if not want_direct and (direct := chain_entry(doc, "direct")):
        del chain[direct[0]]
    direct = chain_entry(doc, "direct")
    if want_sh and not chain_entry(doc, "smarthost"):
        at = direct[0] if direct else 0
        chain.insert(at, CommentedMap([("smarthost", CommentedMap([("server", _scalar(server) or "")]))]))
    if want_direct and not chain_entry(doc, "direct"):
        sh = chain_entry(doc, "smarthost")
        at = sh[0] + 1 if sh else 0
        chain.insert(at, CommentedMap([("direct", CommentedMap())]))


def apply_changes(doc: Any, before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Write the fields that differ into ``doc``; return their names (the password counts when given)."""
    changed = [n for n in FIELD_NAMES if n != "password" and before[n] != after[n]]
    if after["password"]:
        changed.append("password")
    ch = set(changed)
    if "send_via" in ch:
        _set_chain(doc, after["send_via"], after["server"])
    if "hostname" in ch:
        if after["hostname"]:
            doc["hostname"] = after["hostname"]
        else:
            doc.pop("hostname", None)
    if ch & {"send_immediately", "schedule", "port", "timeout"}:
        delivery = _section(doc, "delivery")
        if "send_immediately" in ch:
            delivery["send_immediately"] = after["send_immediately"] == "true"
        if "schedule" in ch:
            delivery["schedule"] = CommentedSeq(after["schedule"].splitlines())
        if "port" in ch:
            delivery["port"] = _scalar(after["port"])
        if "timeout" in ch:
            delivery["timeout"] = _scalar(after["timeout"])
    sh = _writable_options(doc, "smarthost")
    if sh is not None:
        if "server" in ch:
            servers = [s.strip() for s in after["server"].split(",") if s.strip()]
            sh["server"] = servers[0] if len(servers) == 1 else _list(after["server"])
        if ch & {"auth_required", "auth_mode", "username", "password"}:
            _set_auth(sh, after)
    direct = _writable_options(doc, "direct")
    if direct is not None and "dns_servers" in ch:
        direct["dns_servers"] = _list(after["dns_servers"])
    if ch & {"retry_every", "expire_after"}:
        retry = _writable_options(doc, "retry")
        if retry is None:
            doc["chain"].append(CommentedMap([("retry", CommentedMap())]))
            retry = _writable_options(doc, "retry")
        if "retry_every" in ch:
            retry["every"] = _scalar(after["retry_every"])
        if "expire_after" in ch:
            retry["expire_after"] = _scalar(after["expire_after"])
    return changed


def _set_auth(sh: Any, after: dict[str, str]) -> None:
    auth = sh.get("auth")
    if not isinstance(auth, dict):
        auth = sh["auth"] = CommentedMap()
    mode = after["auth_mode"] if after["auth_required"] == "true" else "none"
    auth["mode"] = mode
    if mode == "login":
        if after["username"]:
            auth["username"] = after["username"]
        if after["password"]:
            auth["password"] = after["password"]
    else:
        for key in _SECRET_KEYS:
            auth.pop(key, None)
        if auth.get("mechanism") == "xoauth2":
            auth.pop("mechanism")


def field_for_error(doc: Any, key_path: str, msg: str = "") -> str | None:
    """The form field a ``load_config`` error's key path belongs to (None: the whole form)."""
    keys: dict[str, str] = {}
    for f in FIELDS:
        path = f.key
        for plugin in ("smarthost", "direct", "retry"):
            found = chain_entry(doc, plugin)
            if found is not None:
                path = path.replace(f"chain[{plugin}]", f"chain[{found[0]}].{plugin}")
        keys.setdefault(path, f.name)
    for path in sorted(keys, key=len, reverse=True):
        if path == "chain":
            continue
        if key_path == path or key_path.startswith(path + ".") or key_path.startswith(path + "["):
            return keys[path]
    for plugin, name in (("smarthost", "server"), ("direct", "dns_servers"), ("retry", "retry_every")):
        found = chain_entry(doc, plugin)
        if found is not None and key_path.startswith(f"chain[{found[0]}].{plugin}"):
            return "auth_mode" if ".auth" in key_path or "auth." in msg else name
    return "send_via" if key_path.startswith("chain") else None


def parse_errors(doc: Any, error: ConfigError) -> dict[str, str]:
    """``load_config``'s message split per form field (``""``: not tied to a field); secrets masked."""
    out: dict[str, str] = {}
    for line in str(error).splitlines():
        m = re.match(r"^(?P<src>.*?): (?P<path>[\w.\[\]-]+): (?P<msg>.*)$", line)
        name = field_for_error(doc, m.group("path"), m.group("msg")) if m else None
        text = f"{m.group('path')}: {m.group('msg')}" if m else line
        if name == "password" or "password" in text:
            text = re.sub(r"\(got .*\)$", "", text)
        key = name or ""
        out[key] = f"{out[key]}; {text}" if key in out else text
    return out


class SaveError(Exception):
    """A Save or Undo that wrote nothing; ``errors`` maps form fields to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class ConfigEditor:
    """Save and Undo for one config file, with the contents before each Save for Undo.

    ``apply`` is awaited with the path after each write (``Gateway.reload``);
    if it fails, the previous content is put back.
    """

    history: dict[Path, list[str]] = {}  # survives a new console instance after a reload

    def __init__(self, path: Path, apply: Any) -> None:
        self.path = path
        self.apply = apply
        self._lock = asyncio.Lock()

    @property
    def undo_stack(self) -> list[str]:
        return self.history.setdefault(self.path, [])

    def read(self) -> tuple[str, RoundTrip]:
        text = self.path.read_text(encoding="utf-8")
        return text, RoundTrip(text)

    async def save(self, form: dict[str, Any]) -> list[str]:
        """Validate and write the changed fields, then apply; the names of the fields changed."""
        async with self._lock:
            text, rt = self.read()
            if form.get("version") != digest(text):
                raise SaveError({"": "the configuration file was changed since this page was opened; "
                                     "reload the page and make your changes again"})
            after = submitted(form)
            changed = apply_changes(rt.doc, form_values(rt.doc), after)
            if not changed:
                return []
            await self._write(text, rt.dump(), rt.doc)
            self.undo_stack.append(text)
            return changed

    async def undo(self) -> bool:
        """Put back the file as it was before the last Save and apply it; False when nothing to undo."""
        async with self._lock:
            if not self.undo_stack:
                return False
            previous = self.undo_stack[-1]
            text, rt = self.read()
            await self._write(text, previous, RoundTrip(previous).doc)
            self.undo_stack.pop()
            return True

    async def _write(self, old_text: str, new_text: str, doc: Any) -> None:
        temp = temp_beside(self.path, new_text)
        try:
            try:
                await asyncio.to_thread(load_config, temp)
            except ConfigError as exc:
                raise SaveError(parse_errors(doc, exc)) from exc
            bak = self.path.with_name(self.path.name + ".bak")
            await asyncio.to_thread(self._backup, bak, old_text)
            replace_atomic(temp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        try:
            await self.apply(self.path)
        except Exception as exc:
            replace_atomic(temp_beside(self.path, old_text), self.path)
            raise SaveError({"": f"the new settings could not be applied, the file was put back: {exc}"}) from exc

    @staticmethod
    def _backup(bak: Path, text: str) -> None:
        replace_atomic(temp_beside(bak, text), bak)
