"""The ``rules`` plugin: an ordered list of policy rules, evaluated at ``accept`` and at ``route``.

    chain:
      - rules:
          rules:
            - name: no executables
              match: {attachment_name: '(?i)\\.(exe|scr|js|vbs|bat)$'}
              action: {reject: "554 5.7.1 executable attachments are not accepted"}
            - match: {size_over: 10M}
              action: {route_via: smarthost-big}

The pieces: ``options`` (rules, matches, actions; validated with key paths), ``patterns``
(RE2: no catastrophic backtracking), ``facts`` (what a rule looks at: envelope, session,
decoded header fields, the MIME tree, bounded against hostile structures), ``engine`` (the
walk and its ``Verdict``). Rules that look into the body of a message that is not small and
simple (``facts.quick``) are evaluated in a worker thread, so a large or hostile message never
holds up the intake's other sessions.
See docs/policy.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mailpipe.core.errors import SMTPError
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Message, RouteVia, SessionInfo
from mailpipe.core.plugin import Plugin, PluginContext

from .engine import Verdict, apply, evaluate
from .facts import Facts, quick
from .options import RulesOptions

__all__ = ["RulesOptions", "RulesPlugin"]

BODY_FACTS = ("header", "attachment_name", "content_type")
SESSION_FACTS = ("client", "auth_user", "authenticated")
SESSION_ATTRIBUTE = "rules.session"  # what route-time rules need of the SMTP session, kept with the message


class RulesPlugin(Plugin):
    """Policy rules: reject, hold, drop, redirect, bcc, change header fields or route mail by what it is."""

    name = "rules"
    Options = RulesOptions

    def __init__(self, options: RulesOptions, context: PluginContext, *, instance_name: str | None = None) -> None:
        super().__init__(options, context, instance_name=instance_name)
        o = self.opts
        self.body_at_accept = any(o.needs(what) for what in BODY_FACTS)
        self.routing = any(r.routes for r in o.rules)
        self.body_at_route = any(o.needs(what, routing=True) for what in BODY_FACTS)
        self.session_at_route = any(o.needs(what, routing=True) for what in SESSION_FACTS)

    @property
    def opts(self) -> RulesOptions:
        return self.options  # type: ignore[return-value]

    async def _evaluate(self, facts: Facts, stage: str, *, body: bool) -> Verdict:
        if body and not quick(facts.data or b""):  # parsing a large or intricate body: off the event loop
            return await asyncio.to_thread(evaluate, self.opts.rules, facts, stage)  # type: ignore[arg-type]
        return evaluate(self.opts.rules, facts, stage)  # type: ignore[arg-type]

    def _facts(self, message: Message, session: SessionInfo | None, data: bytes | None, size: int) -> Facts:
        peer = session.peer if session else None
        user = session.auth_user if session else None
        if session is None and isinstance(message.attributes.get(SESSION_ATTRIBUTE), dict):
            kept = message.attributes[SESSION_ATTRIBUTE]
            peer, user = kept.get("peer"), kept.get("auth_user")
        return Facts(message.sender, [r.address for r in message.recipients], size, peer, user, data,
                     self.opts.max_mime_parts)

    @hookimpl
    async def accept(self, message: Message, session: SessionInfo) -> None:
        """Called by the intake at the end of DATA: apply the matching rules' actions.

        ``reject`` answers the client with the rule's reply (nothing is queued); ``drop``
        accepts and discards; ``hold`` queues the message held; ``redirect``, ``bcc`` and the
        header actions change the message before it is queued.
        """
        data = await message.body()
        facts = self._facts(message, session, data, len(data))
        verdict = await self._evaluate(facts, "accept", body=self.body_at_accept)
        for note in facts.notes:
            self.log.warning("%s from %s: %s", message.id, session.peer, note)
        if verdict.matched:
            self.log.info("%s from <%s>: rules matched: %s -> %s", message.id, message.sender,
                          ", ".join(verdict.matched), verdict.outcome)
        if verdict.reject is not None:
            r = verdict.reject
            raise SMTPError(r.code, r.enhanced, r.text)
        apply(verdict, message)
        if self.session_at_route:
            message.attributes[SESSION_ATTRIBUTE] = {"peer": session.peer, "auth_user": session.auth_user}

    @hookimpl
    async def route(self, message: Message, recipients: list[str]) -> list[RouteVia] | None:
        """Called by the delivery: recipients a ``route_via`` rule matches go to the chain entry it names.

        Other recipients are left to the rest of the chain.
        """
        if not self.routing:
            return None
        data = await self._body(message) if self.body_at_route else None
        facts = self._facts(message, None, data, message.size)

        def walk() -> dict[str, Verdict]:
            return {r: evaluate(self.opts.rules, facts.for_recipient(r), "route") for r in recipients}

        verdicts = await asyncio.to_thread(walk) if self.body_at_route and not quick(data or b"") else walk()
        by_entry: dict[str, list[str]] = {}
        reasons: dict[str, str] = {}
        for recipient, verdict in verdicts.items():
            if verdict.route_via is not None:
                by_entry.setdefault(verdict.route_via, []).append(recipient)
                reasons[verdict.route_via] = verdict.route_rule
        return [RouteVia(entry, rcpts, f"rule {reasons[entry]!r}") for entry, rcpts in by_entry.items()] or None

    @staticmethod
    async def _body(message: Message) -> bytes | None:
        """The message bytes; None for a message without any (``pipeline route``'s made-up message)."""
        try:
            return await message.body()
        except RuntimeError:
            return None

    @hookimpl
    async def explain_accept(self, message: Message, session: SessionInfo) -> dict[str, Any] | None:
        """Called by ``pipeline rules test``: each rule, whether it matches, and what would happen."""
        data = await message.body()
        facts = self._facts(message, session, data, len(data))
        verdict = await self._evaluate(facts, "accept", body=self.body_at_accept)
        out: dict[str, Any] = {
            "rules": verdict.trace,
            "outcome": verdict.outcome,
        }
        if verdict.reject is None and verdict.drop is None:
            recipients = [r.address for r in message.recipients]
            if verdict.redirect is not None:
                recipients = list(verdict.redirect)
            recipients += [b for b in verdict.bcc if b not in recipients]
            out["recipients"] = recipients
            if verdict.header_ops:
                out["header changes"] = [f"{op} {name}{': ' + value if op == 'add' else ''}"
                                         for op, name, value in verdict.header_ops]
            if self.routing:
                routing = {}
                for r in recipients:
                    v = evaluate(self.opts.rules, facts.for_recipient(r), "route")
                    routing[r] = (f"route_via {v.route_via} (rule {v.route_rule!r})" if v.route_via
                                  else "the rest of the chain")
                out["routing"] = routing
        if facts.notes:
            out["notes"] = list(facts.notes)
        return out
