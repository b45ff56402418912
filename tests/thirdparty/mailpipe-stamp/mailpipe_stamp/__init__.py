"""mailpipe-stamp: an example third-party plugin, packaged and installed like any other.

In YAML: ``chain: [{stamp: {header: X-Stamp, value: checked, refuse_subject: forbidden}}, ...]``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from mailpipe.core.errors import SMTPError
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Message, SessionInfo
from mailpipe.core.plugin import Plugin


class StampOptions(BaseModel):
    """Options of the stamp plugin."""

    model_config = ConfigDict(extra="forbid")
    header: str = "X-Stamp"
    value: str
    refuse_subject: str | None = None


class StampPlugin(Plugin):
    """Adds a header to every accepted message; refuses messages whose Subject has a given word."""

    name = "stamp"
    Options = StampOptions

    @hookimpl
    async def accept(self, message: Message, session: SessionInfo) -> None:
        """Called by the intake before queueing: refuse (550) or stamp the message."""
        opts: StampOptions = self.options  # type: ignore[assignment]
        body = await message.body()
        head = body.split(b"\r\n\r\n", 1)[0].lower()
        if opts.refuse_subject and b"subject:" in head and opts.refuse_subject.lower().encode() in head:
            raise SMTPError(550, "5.7.1", f"subject contains {opts.refuse_subject!r}")
        message.add_header(opts.header, f"{opts.value} (client {session.peer})")
