"""What is known about each collecting mailbox while the gateway runs (the console's Internet Mail Accounts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MailboxStatus:
    """One collecting account as the collector sees it; times are Unix times, counts since the gateway started.

    ``schedule`` says when it collects (``every 5m``, ``at the delivery schedule``);
    ``target`` where its mail goes (``alice@corp.local`` or ``multidrop: corp.local``).
    ``last_error`` is the failure of the last run (None once a run succeeded);
    ``failures`` counts the runs that failed in a row.
    """

    account: str
    source: str
    schedule: str
    target: str
    running: bool = False
    last_run: float | None = None
    last_success: float | None = None
    next_run: float | None = None
    last_error: str | None = None
    failures: int = 0
    collected: int = 0
    last_collected: int = 0
    deleted: int = 0
    on_server: int = 0
    too_large: int = 0
    refused: int = 0
