"""What a SQL backend remembers of the messages it handed out, from ``claim_due`` to ``release``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from mailpipe.core.message import Message


class Claims:
    """The claimed messages' attributes as stored, the messages ``record`` finished, and body loaders.

    Made by each backend with its ``read_body``. ``record`` rewrites a message's attributes only
    when they changed since the claim (``changed_attributes``); a ``record`` that finished a
    message also ended its lease, so the ``release`` after it has nothing to do (``released``).
    """

    def __init__(self, read_body: Callable[[str], Awaitable[bytes]]) -> None:
        self._read_body = read_body
        self._attributes: dict[str, str] = {}  # as claimed (JSON), so record() rewrites them only if changed
        self._finished: set[str] = set()  # ended by record(): release() has nothing to do

    def with_loader(self, message: Message) -> Message:
        """Give a message read from the database a body loader (the body is read only when asked for)."""

        async def loader(mid: str = message.id) -> bytes:
            return await self._read_body(mid)

        message.set_loader(loader)
        return message

    def handed_out(self, claimed: list[tuple[Message, str]]) -> list[Message]:
        """``claim_due``'s answer from the claim job's messages with their attributes as stored (JSON)."""
        for message, attributes in claimed:
            self._attributes[message.id] = attributes
        return [self.with_loader(message) for message, _ in claimed]

    def changed_attributes(self, message: Message) -> str | None:
        """The message's attributes as JSON for ``record`` to write; None when they are as stored."""
        attributes = json.dumps(message.attributes, default=str)
        return None if attributes == self._attributes.get(message.id) else attributes

    def recorded(self, message_id: str, attributes: str | None, finished: bool) -> None:
        """``record`` committed: ``attributes`` (when written) are now stored; ``finished``: the lease ended."""
        if attributes is not None:
            self._attributes[message_id] = attributes
        if finished:
            self._finished.add(message_id)

    def held(self) -> list[str]:
        """The messages handed out and not released yet."""
        return list(self._attributes)

    def released(self, message_id: str) -> bool:
        """``release`` of a message: forget it; true when ``record`` already ended its lease (nothing to do)."""
        self._attributes.pop(message_id, None)
        if message_id in self._finished:
            self._finished.discard(message_id)
            return True
        return False
