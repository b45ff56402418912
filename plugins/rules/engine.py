"""Evaluating the rules: which match a message, and what they add up to (a ``Verdict``).

Rules are walked in order. Every rule that matches contributes its actions; ``reject`` and
``drop`` end the walk (nothing later applies), ``stop`` ends it after the current rule.
Matches see the message as it was received: the actions are applied together afterwards
(``apply``), in rule order. At ``accept`` the routing action ``route_via`` is only noted;
when mail is routed, the walk looks at the rules with ``route_via`` or ``stop`` only, per
recipient, and the first ``route_via`` of a matching rule names the recipient's chain entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mailpipe.core.errors import Reply
from mailpipe.core.message import Message

from .facts import Facts
from .options import Match, Rule

Stage = Literal["accept", "route"]


def matches(m: Match, f: Facts) -> bool:
    """Whether ``f`` satisfies every key of ``m`` (envelope and session first: they cost nothing)."""
    if m.sender is not None and not m.sender.search(f.sender):
        return False
    if m.recipient is not None and not any(m.recipient.search(r) for r in f.recipients):
        return False
    if m.size_over is not None and not f.size > m.size_over:
        return False
    if m.size_under is not None and not f.size < m.size_under:
        return False
    if m.client is not None and not f.client_in(m.client):
        return False
    if m.authenticated is not None and bool(f.auth_user) != m.authenticated:
        return False
    if m.auth_user is not None and not (f.auth_user and m.auth_user.search(f.auth_user)):
        return False
    for name, pattern in (m.header or {}).items():
        if not any(pattern.search(v) for v in f.headers.get(name.lower(), [])):
            return False
    if m.attachment_name is not None and not any(m.attachment_name.search(n) for n in f.attachment_names):
        return False
    if m.content_type is not None and not any(m.content_type.search(t) for t in f.content_types):
        return False
    if m.all_ is not None and not all(matches(x, f) for x in m.all_):
        return False
    if m.any_ is not None and not any(matches(x, f) for x in m.any_):
        return False
    return m.not_ is None or not matches(m.not_, f)


@dataclass
class Verdict:
    """What the matching rules add up to, and the trace ``pipeline rules test`` prints."""

    matched: list[str] = field(default_factory=list)
    reject: Reply | None = None
    drop: str | None = None
    hold: str | None = None
    redirect: list[str] | None = None
    bcc: list[str] = field(default_factory=list)
    header_ops: list[tuple[str, str, str]] = field(default_factory=list)  # ("add", name, value) / ("remove", name, "")
    route_via: str | None = None
    route_rule: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """In words: ``reject 554 5.7.1 ...``, ``drop``, ``hold``, ``accept``."""
        if self.reject is not None:
            return f"reject: {self.reject}"
        if self.drop is not None:
            return f"drop (accepted and discarded): {self.drop}"
        if self.hold is not None:
            return f"hold (queued held until an administrator releases it): {self.hold}"
        return "accept"


def evaluate(rules: list[Rule], facts: Facts, stage: Stage = "accept") -> Verdict:
    """Walk ``rules`` over ``facts`` at ``stage``; the verdict (nothing is changed)."""
    verdict = Verdict()
    for rule in rules:
        if stage == "route" and not any(a.kind in ("route_via", "stop") for a in rule.action):
            continue
        hit = matches(rule.match, facts)
        verdict.trace.append({"rule": rule.name, "matched": hit, "actions": [a.describe() for a in rule.action]})
        if not hit:
            continue
        verdict.matched.append(rule.name)
        stop = False
        for action in rule.action:
            kind = action.kind
            if kind == "route_via":
                if verdict.route_via is None:
                    verdict.route_via, verdict.route_rule = action.entry, rule.name
            elif stage == "route":
                stop = stop or kind == "stop"
            elif kind == "reject":
                verdict.reject = action.reply
                return verdict
            elif kind == "drop":
                verdict.drop = action.reason or f"rule {rule.name!r}"
                return verdict
            elif kind == "hold":
                verdict.hold = action.reason or f"rule {rule.name!r}"
            elif kind == "redirect":
                verdict.redirect = list(action.addresses)
            elif kind == "bcc":
                verdict.bcc += [a for a in action.addresses if a not in verdict.bcc]
            elif kind == "add_header":
                verdict.header_ops += [("add", name, value) for name, value in action.headers.items()]
            elif kind == "remove_header":
                verdict.header_ops += [("remove", name, "") for name in action.names]
            elif kind == "stop":
                stop = True
        if stop or (stage == "route" and verdict.route_via is not None):
            break
    return verdict


def apply(verdict: Verdict, message: Message) -> None:
    """Carry out an ``accept`` verdict on ``message`` (still in memory): envelope, header fields, hold, drop.

    ``reject`` is the caller's (it raises ``SMTPError``).
    """
    for op, name, value in verdict.header_ops:
        if op == "remove":
            message.remove_header(name)
        else:
            message.add_header(name, value)
    if verdict.redirect is not None:
        message.replace_recipients(verdict.redirect)
    for address in verdict.bcc:
        message.add_recipient(address)
    if verdict.matched:
        message.attributes["rules"] = list(verdict.matched)
    if verdict.hold is not None:
        message.hold(verdict.hold)
    if verdict.drop is not None:
        message.drop(verdict.drop)
