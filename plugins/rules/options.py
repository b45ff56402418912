"""Options of ``chain: - rules: {rules: [...]}``: the rules, their matches and their actions.

Validated when the configuration is loaded; a mistake is refused with its key path
(``chain[0].rules.rules[2].action.reject``): a pattern RE2 cannot run, a reject reply that
is not a 4xx/5xx with matching enhanced code, a header name with a colon, a ``route_via`` to
a chain entry that does not exist.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mailpipe.core.errors import Reply
from mailpipe.core.settings import Settings, Size, Strict

from .patterns import SafePattern

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")  # RFC 5322 field name: printable ASCII except ':'
_REPLY = re.compile(r"^([45]\d\d)(?:\s+([45])\.(\d{1,3})\.(\d{1,3}))?\s+(\S.*)$")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
BARE_ACTIONS = ("hold", "drop", "stop")
ACTIONS = ("reject", "hold", "drop", "redirect", "bcc", "add_header", "remove_header", "route_via", "stop")
ROUTING = ("route_via",)


def parse_reply(text: str) -> Reply:
    """``"554 5.7.1 executable attachments are not accepted"`` -> Reply; ValueError saying what is wrong."""
    if not isinstance(text, str) or "\r" in text or "\n" in text:
        raise ValueError("expected one line: a 4xx or 5xx code, an optional enhanced code and a text")
    m = _REPLY.match(text.strip())
    if not m:
        raise ValueError(f"expected a reply such as '554 5.7.1 not accepted here' (4xx or 5xx code, "
                         f"then text), got {text!r}")
    code, klass, subject, detail, words = m.groups()
    if klass is not None and klass != code[0]:
        raise ValueError(f"the enhanced code {klass}.{subject}.{detail} does not match the reply code {code} "
                         f"(a {code[0]}xx reply takes {code[0]}.x.x)")
    if len(words) > 400:
        raise ValueError("the reply text is longer than 400 characters")
    enhanced = f"{klass}.{subject}.{detail}" if klass else None
    return Reply(int(code), enhanced, words)


def _addresses(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected an address or a list of addresses, got {value!r}")
    for item in items:
        if not isinstance(item, str) or not _ADDRESS.match(item.strip()):
            raise ValueError(f"expected an email address such as audit@corp.example, got {item!r}")
    return [i.strip() for i in items]


def _header_name(name: Any) -> str:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"expected a header field name (printable ASCII, no colon or space), got {name!r}")
    return name


class Match(Strict):
    """What a rule looks at; every key given must match (``all``/``any``/``not`` combine matches).

    Patterns are regular expressions searched anywhere in the text (anchor with ``^``/``$``).
    An empty match matches every message.
    """

    sender: SafePattern | None = Field(None, description="the envelope sender ('' for <>)")
    recipient: SafePattern | None = Field(None, description="an envelope recipient")
    header: dict[str, SafePattern] | None = Field(None, description="header name -> pattern on its (decoded) value")
    size_over: Size | None = Field(None, description="the message is larger than this (10M, 512K)")
    size_under: Size | None = Field(None, description="the message is smaller than this")
    client: list[Network] | None = Field(None, description="the SMTP client's address is in one of these networks")
    auth_user: SafePattern | None = Field(None, description="the SMTP AUTH login (no match without one)")
    authenticated: bool | None = Field(None, description="the client logged in (true) or did not (false)")
    attachment_name: SafePattern | None = Field(None, description="a MIME part's file name")
    content_type: SafePattern | None = Field(None, description="a MIME part's content type (text/html)")
    all_: list[Match] | None = Field(None, alias="all")
    any_: list[Match] | None = Field(None, alias="any")
    not_: Match | None = Field(None, alias="not")

    @field_validator("client", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list):
            out = []
            for v in items:
                try:
                    out.append(ipaddress.ip_network(str(v), strict=False))
                except ValueError:
                    raise ValueError(f"expected an address or network such as 192.0.2.0/24, got {v!r}") from None
            return out
        return value

    @field_validator("header")
    @classmethod
    def _header_names(cls, value: dict[str, SafePattern] | None) -> dict[str, SafePattern] | None:
        for name in value or {}:
            _header_name(name)
        return value

    @field_validator("all_", "any_")
    @classmethod
    def _not_empty(cls, value: list[Match] | None) -> list[Match] | None:
        if value is not None and not value:
            raise ValueError("expected at least one match")
        return value

    def uses(self, what: str) -> bool:
        """Whether this match (or one inside it) looks at ``what`` (a field name)."""
        if getattr(self, what) is not None:
            return True
        inner = [*(self.all_ or []), *(self.any_ or []), *([self.not_] if self.not_ else [])]
        return any(m.uses(what) for m in inner)


class Action(Strict):
    """One thing a rule does; written ``hold``, ``{reject: "554 5.7.1 ..."}``, ``{bcc: audit@corp.example}``..."""

    kind: str
    reply: Reply | None = None
    reason: str = ""
    addresses: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    names: list[str] = Field(default_factory=list)
    entry: str = ""

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, Action):
            return value
        if isinstance(value, str):
            if value not in BARE_ACTIONS:
                raise ValueError(f"expected one of {', '.join(BARE_ACTIONS)} or a mapping such as "
                                 "{reject: '554 5.7.1 ...'}")
            return {"kind": value}
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(f"expected one action, e.g. hold or {{bcc: audit@corp.example}}, got {value!r}")
        (kind, arg), = value.items()
        if kind not in ACTIONS:
            raise ValueError(f"unknown action {kind!r} (expected one of {', '.join(ACTIONS)})")
        if kind == "reject":
            return {"kind": kind, "reply": parse_reply(arg)}
        if kind in ("hold", "drop"):
            if arg is not None and (not isinstance(arg, str) or "\n" in arg or "\r" in arg):
                raise ValueError(f"{kind}: expected a one-line reason, got {arg!r}")
            return {"kind": kind, "reason": arg or ""}
        if kind in ("redirect", "bcc"):
            return {"kind": kind, "addresses": _addresses(arg)}
        if kind == "add_header":
            if not isinstance(arg, dict) or not arg:
                raise ValueError("add_header: expected a mapping of header name to value, e.g. {X-Policy: checked}")
            headers = {}
            for name, text in arg.items():
                text = str(text)
                if "\r" in text or "\n" in text:
                    raise ValueError(f"add_header: the value of {name} must be one line")
                headers[_header_name(name)] = text
            return {"kind": kind, "headers": headers}
        if kind == "remove_header":
            names = [arg] if isinstance(arg, str) else arg
            if not isinstance(names, list) or not names:
                raise ValueError("remove_header: expected a header name or a list of them")
            return {"kind": kind, "names": [_header_name(n) for n in names]}
        if kind == "route_via":
            if not isinstance(arg, str) or not arg:
                raise ValueError("route_via: expected the name of a chain entry, e.g. smarthost-big")
            return {"kind": kind, "entry": arg}
        raise ValueError("stop takes no argument: write it as - stop")

    def describe(self) -> str:
        """The action as ``pipeline rules test`` prints it."""
        if self.kind == "reject":
            return f"reject {self.reply}"
        if self.kind in ("hold", "drop"):
            return f"{self.kind}{': ' + self.reason if self.reason else ''}"
        if self.kind in ("redirect", "bcc"):
            return f"{self.kind} {', '.join(self.addresses)}"
        if self.kind == "add_header":
            return "add_header " + "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        if self.kind == "remove_header":
            return "remove_header " + ", ".join(self.names)
        if self.kind == "route_via":
            return f"route_via {self.entry}"
        return self.kind


class Rule(Strict):
    """One rule: a name (for logs), what it matches and what it does (one action or a list)."""

    name: str = ""
    match: Match = Field(default_factory=Match)
    action: list[Action]

    @field_validator("action", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("expected an action, e.g. hold, or a list of actions")
        return value if isinstance(value, list) else [value]

    @field_validator("action")
    @classmethod
    def _some(cls, value: list[Action]) -> list[Action]:
        if not value:
            raise ValueError("expected at least one action")
        return value

    @property
    def routes(self) -> bool:
        """Whether this rule acts when mail is routed (``route_via``, and ``stop`` ending the walk)."""
        return any(a.kind in ROUTING for a in self.action)


class RulesOptions(Strict):
    """Options of ``chain: - rules: {...}``."""

    rules: list[Rule] = Field(description="evaluated in order at accept; route_via also when mail is routed")
    max_mime_parts: int = Field(200, ge=1, le=10_000,
                                description="MIME parts walked at most; deeper or larger structures are scanned "
                                            "line by line for attachment names and types instead")

    @model_validator(mode="after")
    def _names(self, info: ValidationInfo) -> RulesOptions:
        for i, rule in enumerate(self.rules):
            if not rule.name:
                rule.name = f"rule {i + 1}"
        settings = (info.context or {}).get("settings") if info.context else None
        if isinstance(settings, Settings):
            entries = settings.chain_names()
            for i, rule in enumerate(self.rules):
                for j, action in enumerate(rule.action):
                    if action.kind == "route_via" and action.entry not in entries:
                        raise ValueError(
                            f"rules[{i}].action[{j}].route_via: no chain entry is called {action.entry!r} "
                            f"(entries: {', '.join(entries)}); name one with "
                            f"- smarthost: {{name: {action.entry}, ...}}")
        return self

    def needs(self, what: str, *, routing: bool = False) -> bool:
        """Whether any rule (only the routing ones with ``routing``) looks at ``what``."""
        return any(r.match.uses(what) for r in self.rules if r.routes or not routing)
