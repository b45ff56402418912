"""The ``clamav`` plugin: every message is scanned by a ClamAV daemon (clamd) before it is queued.

    chain:
      - clamav: {socket: /run/clamav/clamd.ctl, timeout: 30s, action: reject, on_error: tempfail}

At the end of DATA the whole message goes to clamd (``INSTREAM``, see ``clamd``). A virus:
``554 5.7.0`` to the client (``action: reject``) or the message is queued held and flagged
as quarantined (``action: quarantine``), with a ``clamav.infected`` event either way. clamd
unreachable, too slow or in error: ``451 4.7.0`` (``on_error: tempfail``, the client tries
again later) or the message passes with an ``X-Virus-Scan: not scanned ...`` header
(``on_error: accept``); ``clamav.unavailable`` when that starts, ``clamav.available`` when it
works again. clamd's own limits (archive depth, scan size and time) guard against zip bombs;
the time-out bounds the wait. See docs/policy.md.
"""

from __future__ import annotations

from typing import Any

from mailpipe.core.errors import SMTPError
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Message, SessionInfo
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.settings import split_host_port

from .clamd import Clamd, ClamdError
from .options import ClamavOptions

__all__ = ["ClamavOptions", "ClamavPlugin"]

NOT_SCANNED = "X-Virus-Scan"


class ClamavPlugin(Plugin):
    """Virus scanning by clamd (ClamAV) at the end of DATA: reject or quarantine infected mail."""

    name = "clamav"
    Options = ClamavOptions

    def __init__(self, options: ClamavOptions, context: PluginContext, *, instance_name: str | None = None) -> None:
        super().__init__(options, context, instance_name=instance_name)
        o = self.opts
        if o.address is not None:
            host, port = split_host_port(o.address)
            self.clamd = Clamd(host=host, port=port, timeout=o.timeout)
        else:
            assert o.socket is not None
            self.clamd = Clamd(socket=str(context.resolve_path(o.socket)), timeout=o.timeout)
        self.failing = False

    @property
    def opts(self) -> ClamavOptions:
        return self.options  # type: ignore[return-value]

    def take_over(self, old: Plugin) -> None:
        """A reload replaced ``old``: an outage it reported is not reported again."""
        if isinstance(old, ClamavPlugin):
            self.failing = old.failing

    @hookimpl
    async def accept(self, message: Message, session: SessionInfo) -> None:
        """Called by the intake at the end of DATA: scan the message; refuse, quarantine or pass it."""
        try:
            verdict = await self.clamd.scan(await message.body())
        except ClamdError as exc:
            self._unavailable(str(exc))
            if self.opts.on_error == "tempfail":
                raise SMTPError(451, "4.7.0", "virus scanner unavailable, try again later") from None
            message.add_header(NOT_SCANNED, f"not scanned by {self.context.settings.hostname}: {exc}"[:900])
            return
        if self.failing:
            self.failing = False
            self.context.emit("clamav.available", f"clamd at {self.clamd.where} answers again; mail is scanned")
        if verdict.clean:
            return
        virus = verdict.virus or "unknown"
        quarantine = self.opts.action == "quarantine"
        self.context.emit(
            "clamav.infected",
            f"virus {virus} in a message from <{message.sender}> ({session.peer}) for "
            f"{', '.join(r.address for r in message.recipients)}: "
            f"{'queued held in quarantine' if quarantine else 'refused with 554 5.7.0'}",
            level="warning", virus=virus, sender=message.sender, client=session.peer,
            action=self.opts.action)
        if not quarantine:
            raise SMTPError(554, "5.7.0", f"message refused: virus found ({virus})")
        message.attributes["quarantine"] = {"virus": virus, "by": self.instance_name}
        message.hold(f"quarantined: virus {virus} found by {self.instance_name}")

    def _unavailable(self, why: str) -> None:
        if self.failing:
            self.log.info("scan failed: %s", why)
            return
        self.failing = True
        what = ("messages are refused with 451 4.7.0 until it answers" if self.opts.on_error == "tempfail"
                else f"messages pass unscanned, marked with an {NOT_SCANNED} header")
        self.context.emit("clamav.unavailable", f"{why}; {what}", level="error", clamd=self.clamd.where)

    @hookimpl
    async def explain_accept(self, message: Message, session: SessionInfo) -> dict[str, Any] | None:
        """Called by ``pipeline rules test``: where clamd is and what would happen (nothing is scanned)."""
        return {"clamd": self.clamd.where, "action when a virus is found": self.opts.action,
                "when clamd cannot answer": self.opts.on_error, "scanned": "no (a dry run does not scan)"}
