"""What the intake (the SMTP handler and the collector's ``admit``) needs from the gateway, and nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..clock import Clock
from ..events import Events
from ..message import Message
from ..queue import DeliveryQueue
from ..runtime import RuntimeHolder
from ..sessions import Sessions


class Outage:
    """Whether the queue refused the last store: one event when an outage begins, one when it ends."""

    def __init__(self) -> None:
        self.down = False

    def began(self) -> bool:
        """A store failed; True if the queue was working until now."""
        first, self.down = not self.down, True
        return first

    def ended(self) -> bool:
        """A store worked; True if the queue was down until now."""
        was, self.down = self.down, False
        return was


@dataclass(frozen=True)
class IntakeServices:
    """What the intake needs from the gateway, and nothing else.

    ``runtimes`` gives the settings and chain in force (read per message, so a reload
    applies to the next message); ``stored`` is told of each committed message (the
    scheduler delivers it now if it may); ``commit``, when given, stores a message instead
    of ``queue.store`` (the gateway's hand-off to its scheduler: stored already claimed).
    """

    runtimes: RuntimeHolder
    queue: DeliveryQueue
    events: Events
    clock: Clock
    sessions: Sessions
    stored: Callable[[Message], None]
    outage: Outage = field(default_factory=Outage)
    commit: Callable[[Message, bytes], Awaitable[bool | None]] | None = None
