"""The ``direct`` plugin: "send messages direct" to each recipient domain's MX hosts.

Being built (issue 4). Until then it routes nothing, so a chain with only
``direct`` leaves mail queued with "no route" rather than losing it.
"""

from __future__ import annotations

from mailpipe.core.plugin import Plugin
from mailpipe.core.settings import Strict


class DirectOptions(Strict):
    """Options of ``chain: - direct: {...}``."""

    dns_servers: list[str] = []


class DirectPlugin(Plugin):
    """Delivers straight to each recipient domain's MX hosts (DNS)."""

    name = "direct"
    Options = DirectOptions
