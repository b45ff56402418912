"""Who is told about failed recipients, and with which report (the bounce rules).

Called through ``Gateway.notices`` by the scheduler after each attempt of a
message, before the attempt is recorded: the reports returned here are stored
by the queue in the same transaction as the attempt, so a crash can neither
bounce twice nor lose the bounce.

The rules:

- one report per message and attempt, listing every recipient that failed
  permanently or expired in that attempt (``Decision.bounce`` with ``notify``),
  plus those the retry policy wants a delay warning for (``Decision.retry``
  with ``warn``; at most one warning per message, remembered in the message's
  ``delay_warned`` attribute);
- never to the null sender ``<>``, so never a bounce of a bounce (reports are
  themselves sent from ``<>`` and marked with the ``dsn`` attribute);
- the report is a new queued message from ``<>`` to the original envelope
  sender, delivered through the same chain as any other message.
"""

from __future__ import annotations

import logging

from . import dsn
from .ids import new_queue_id
from .message import Decision, Message, Recipient, RecipientResult

log = logging.getLogger("mailpipe.bounces")


def silent_reason(message: Message) -> str | None:
    """Why no report may be sent about ``message`` (None: reports are allowed)."""
    if message.null_sender:
        return "the sender is the null sender <> (a bounce or other automatic message)"
    if message.attributes.get("dsn"):
        return "the message is itself a delivery status notification"
    return None


def reports_for(message: Message, results: list[RecipientResult], decisions: dict[str, Decision],
                now: float) -> list[dsn.RecipientReport]:
    """The recipients this attempt must tell the sender about."""
    warned = bool(message.attributes.get("delay_warned"))
    out: list[dsn.RecipientReport] = []
    for r in results:
        d = decisions.get(r.recipient)
        if not r.failed or d is None:
            continue
        if d.action == "bounce" and d.notify:
            out.append(dsn.RecipientReport(r.recipient, dsn.FAILED, r.reply, r.remote_host, now, d.expired))
        elif d.action == "retry" and d.warn and not warned:
            out.append(dsn.RecipientReport(r.recipient, dsn.DELAYED, r.reply, r.remote_host, now,
                                           note=d.reason))
    return out


def envelope_id(message: Message) -> str | None:
    """The ENVID the client gave with MAIL FROM (RFC 3461), if any."""
    for opt in message.mail_options:
        key, _, value = opt.partition("=")
        if key.upper() == "ENVID" and value:
            return value
    return None


async def notices(hostname: str, message: Message, results: list[RecipientResult],
                  decisions: dict[str, Decision], now: float) -> list[tuple[Message, bytes]]:
    """The report (at most one) to queue for this attempt of ``message``, with its bytes.

    Marks ``message.attributes["delay_warned"]`` when the report carries a
    delay warning; the queue stores that with the attempt.
    """
    if silent_reason(message) is not None:
        return []
    reports = reports_for(message, results, decisions, now)
    if not reports:
        return []
    try:
        original = await message.body()
    except Exception as exc:  # noqa: BLE001 - the report goes out even without the original header
        log.warning("%s: original message unreadable for the report (%s); sending it without",
                    message.id, exc)
        original = b""
    try:
        msg_id, data = dsn.compose(
            hostname=hostname, sender=message.sender, original=original, arrived=message.created, now=now,
            reports=reports, envelope_id=envelope_id(message),
        )
    except Exception:  # noqa: BLE001 - an odd original header must not stop the report
        log.exception("%s: composing the report with the original header failed; sending it without",
                      message.id)
        msg_id, data = dsn.compose(hostname=hostname, sender=message.sender, original=b"",
                                   arrived=message.created, now=now, reports=reports)
    failed = any(r.action == dsn.FAILED for r in reports)
    if any(r.action == dsn.DELAYED for r in reports):
        message.attributes["delay_warned"] = now
    report = Message(
        id=new_queue_id(now), sender="", recipients=[Recipient(message.sender)], created=now, size=len(data),
        mail_options=[] if message.sender.isascii() else ["SMTPUTF8"],
        attributes={"dsn": True, "dsn_action": dsn.FAILED if failed else dsn.DELAYED, "original": message.id,
                    "message_id": msg_id, "about": [r.address for r in reports]},
    )
    return [(report, data)]
