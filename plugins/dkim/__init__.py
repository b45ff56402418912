"""The ``dkim`` plugin: sign outgoing mail with DKIM (RFC 6376; RSA and Ed25519, RFC 8463) using dkimpy.

Where it signs: in ``before_send``, once per delivery attempt, just before the bytes leave
(not at ``accept``). That is after every change any plugin makes to the message, whatever the
chain order, and it covers mailpipe's own reports (bounces, delay warnings, alerts), which are
queued directly and never pass ``accept``. The queue keeps the unsigned bytes; each attempt
signs afresh (a fresh ``t=``; a rotated key file is picked up without a reload).

Which key: the domain of the From header (``sign_by: from``, what DMARC aligns with) or of the
envelope sender (``sign_by: sender``; a report from ``<>`` falls back to its From); every key
of that domain signs (RSA and Ed25519 side by side), or, with ``subdomains``, the keys of the
nearest parent domain that has keys. A message already signed by a key's domain and selector
is not signed by it again. A message of a domain without keys leaves unsigned.

When a needed key cannot be used (unreadable, too weak, not the configured algorithm), the
message waits (temporary failure, event ``dkim.key_unusable`` once an hour per key): mail
from a DMARC-protected domain sent unsigned would be refused by its receivers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dkim as dkimpy

from mailpipe.core.errors import TemporaryError
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Message
from mailpipe.core.plugin import Plugin, PluginContext

from .keys import KeyProblem, KeyRing, LoadedKey, generate_key, key_warnings, zone_line
from .options import DkimOptions, KeySpec
from .signer import crlf, from_domain, header_block, sign

__all__ = ["DkimPlugin", "DkimOptions"]

#: A failing key is reported at most once in this many seconds.
REPORT_EVERY = 3600.0


class DkimPlugin(Plugin):
    """Signs outgoing mail with DKIM (RSA and Ed25519 keys per domain and selector)."""

    name = "dkim"
    Options = DkimOptions

    def __init__(self, options: DkimOptions, context: PluginContext, *, instance_name: str | None = None) -> None:
        super().__init__(options, context, instance_name=instance_name)
        self.keys = KeyRing(self.opts.keys, context.resolve_path)
        self._reported: dict[str, float] = {}

    @property
    def opts(self) -> DkimOptions:
        return self.options  # type: ignore[return-value]

    #: Called by ``pipeline dkim keygen``: write a new key (0600), return its DNS TXT value.
    keygen = staticmethod(generate_key)
    #: Called by ``pipeline dkim keygen``: the TXT record as a zone file line.
    zone_line = staticmethod(zone_line)

    def config_warnings(self) -> list[str]:
        """Called by ``pipeline check``: key files unreadable, unusable, too weak or readable by others."""
        return [w for spec in self.opts.keys for w in key_warnings(spec, self.keys.path(spec))]

    @hookimpl
    def startup(self, context: PluginContext) -> None:
        """Called at start and on reload: read every key once; an unusable one is an event, not a refusal."""
        for spec in self.opts.keys:
            try:
                self.keys.load(spec)
            except KeyProblem as exc:
                self._report(spec, exc)

    def signing_domain(self, message: Message, block: bytes) -> str | None:
        """The domain whose keys sign ``message``: the From header's, or the envelope sender's (``sign_by``)."""
        if self.opts.sign_by == "sender" and message.sender:
            return message.sender.rpartition("@")[2].lower() or None
        return from_domain(block)

    @hookimpl
    async def before_send(self, message: Message, data: bytes) -> bytes | None:
        """Called by the delivery before each attempt's first ``deliver``: ``data`` with DKIM-Signature(s) prepended.

        None when the message's domain has no key or every key already signed it; ``TemporaryError``
        (the message waits) when a needed key cannot be used or dkimpy refuses the message.
        """
        data = crlf(data)
        domain = self.signing_domain(message, header_block(data))
        specs = self.keys.for_domain(domain, self.opts.subdomains) if domain else []
        if not specs:
            return None
        keys: list[LoadedKey] = []
        for spec in specs:
            try:
                keys.append(self.keys.load(spec))
            except KeyProblem as exc:
                self._report(spec, exc, message=message.id)
                raise TemporaryError(f"DKIM key {spec.selector}._domainkey.{spec.domain} cannot be used; "
                                     "the message waits for it", 451, "4.7.0") from None
        try:
            signed, names = await asyncio.to_thread(sign, data, keys, self.opts.headers, self.opts.oversign)
        except dkimpy.DKIMException as exc:
            self.context.emit("dkim.not_signed", f"{message.id}: DKIM signing for {domain} failed: {exc}",
                              level="warning", message=message.id, domain=domain)
            raise TemporaryError(f"DKIM signing failed: {exc}", 451, "4.7.0") from None
        if not names:
            return None
        self.context.emit("dkim.signed", f"{message.id}: signed by {', '.join(names)}", level="debug", store=False,
                          message=message.id, keys=names)
        return signed

    def _report(self, spec: KeySpec, exc: KeyProblem, **data: Any) -> None:
        name = f"{spec.selector}._domainkey.{spec.domain}"
        now = self.context.clock.now()
        last = self._reported.get(name)
        if last is not None and now - last < REPORT_EVERY:
            return
        self._reported[name] = now
        self.context.emit("dkim.key_unusable", f"DKIM key {name}: {exc}; mail of {spec.domain} waits until it is "
                          "fixed (then `pipeline queue retry --all`)", level="error", key=name, **data)
