"""What the console's message page shows: the client in words, and only the actions that apply.

Used by ``app.Console.message``; the actions themselves go through ``mailpipe.core.queueactions``
(the same as ``pipeline queue``), so each leaves a ``console.<action>`` event naming the user.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from mailpipe.core.message import Message
from mailpipe.core.queueactions import applies

ACTIONS = [("retry", "Retry now"), ("hold", "Hold"), ("release", "Release"), ("delete", "Delete")]
_CLIENT = [("peer", "Address"), ("helo", "HELO name"), ("listener", "Listener"), ("tls", "TLS"),
           ("auth_user", "Logged in as"), ("may_relay", "Relay permitted"), ("smtputf8", "SMTPUTF8")]


def shown(value: Any) -> str:
    """A stored value for people: yes/no, ``-`` for nothing, text otherwise (never a Python repr)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(shown(v) for v in value) or "-"
    return str(value)


def client_facts(client: dict[str, Any]) -> list[tuple[str, str]]:
    """The SMTP client that handed the message in, as (label, value) rows; unknown keys follow by name."""
    rows = [(label, shown(client.get(key))) for key, label in _CLIENT if key in client]
    rows += [(key.replace("_", " "), shown(value)) for key, value in sorted(client.items())
             if key not in dict(_CLIENT)]
    return rows


def actions_for(message: Message) -> list[tuple[str, str]]:
    """The (action, label) pairs that would change this message: none for one that is finished."""
    states = dict(Counter(r.state.value for r in message.recipients))
    return [(action, label) for action, label in ACTIONS if applies(action, states)]
