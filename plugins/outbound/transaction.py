"""One SMTP mail transaction on a connected client, with an outcome per recipient.

MAIL refused: every recipient gets that reply. RCPT: each recipient gets its
own reply. DATA and the final dot: the reply goes to every recipient whose RCPT
was accepted. Delivered means a 250 after the final dot and nothing else. A
connection lost at any point is a temporary failure for recipients without a
final outcome.
"""

from __future__ import annotations

import contextlib
import time

import aiosmtplib

from mailpipe.core.errors import Reply
from mailpipe.core.message import Message, Outcome, RecipientResult

from .data import send_data
from .replies import reply_for
from .session import Session


def mail_options(client: aiosmtplib.SMTP, message: Message, size: int) -> list[str] | Reply:
    """MAIL FROM parameters to pass on; a Reply when the next hop cannot take the message."""
    opts: list[str] = []
    wanted = {o.upper().split("=", 1)[0]: o for o in message.mail_options}
    if "SMTPUTF8" in wanted:
        if not client.supports_extension("smtputf8"):
            return Reply(550, "5.6.7", "the next hop does not support SMTPUTF8, which this message needs")
        opts.append("SMTPUTF8")
    if "BODY" in wanted and wanted["BODY"].upper().endswith("8BITMIME") and client.supports_extension("8bitmime"):
        opts.append("BODY=8BITMIME")
    if client.supports_extension("size"):
        opts.append(f"SIZE={size}")
    return opts


def reusable(results: list[RecipientResult]) -> bool:
    """Whether a session is in a known state after ``send``: it finished, no 421, no lost or timed-out connection."""
    return bool(results) and not any(r.reply.code == 421 or r.reply.enhanced == "4.4.2" for r in results)


async def send(
    session: Session, message: Message, recipients: list[str], data: bytes, *, route: str,
) -> list[RecipientResult]:
    """Run MAIL, RCPT for each recipient, DATA on ``session``; return one result per recipient.

    Called by the delivery plugins' ``deliver``; ``route`` is the label the
    results carry. Never raises for the server's sake: every failure is an outcome.
    """
    client, host, addr = session.client, session.peer, session.address
    started = time.monotonic()
    results: dict[str, Reply] = {}

    def finish() -> list[RecipientResult]:
        spent = time.monotonic() - started
        return [RecipientResult(r, Outcome.of(results[r]), results[r], host, addr, route, spent) for r in recipients]

    def fail_rest(reply: Reply) -> list[RecipientResult]:
        for r in recipients:
            if r not in results or 200 <= results[r].code < 300:
                results[r] = reply
        return finish()

    opts = mail_options(client, message, len(data))
    if isinstance(opts, Reply):
        return fail_rest(opts)
    encoding = "utf-8" if "SMTPUTF8" in opts else "ascii"
    try:
        await client.mail(message.sender, options=opts, encoding=encoding)
    except aiosmtplib.SMTPResponseException as exc:
        with contextlib.suppress(Exception):  # a failing connection is closed by the pool
            await client.rset()
        return fail_rest(reply_for(exc, "MAIL FROM", host))
    except Exception as exc:  # noqa: BLE001 - any failure of the connection
        return fail_rest(reply_for(exc, "MAIL FROM", host))
    accepted: list[str] = []
    for rcpt in recipients:
        try:
            await client.rcpt(rcpt, encoding=encoding)
            accepted.append(rcpt)
        except aiosmtplib.SMTPResponseException as exc:
            results[rcpt] = reply_for(exc, "RCPT TO", host)
        except Exception as exc:  # noqa: BLE001
            return fail_rest(reply_for(exc, "RCPT TO", host))
    if not accepted:
        with contextlib.suppress(Exception):
            await client.rset()
        return finish()
    try:
        response = await send_data(client, data)
        reply = Reply.parse(response.code, response.message)
        final = Reply(reply.code, reply.enhanced, f"{host} said: {reply.text}")
    except aiosmtplib.SMTPResponseException as exc:
        final = reply_for(exc, "DATA", host)
    except Exception as exc:  # noqa: BLE001 - no reply to the final dot: not delivered
        final = reply_for(exc, "DATA", host)
    if final.code != 250 and 200 <= final.code < 300:
        final = Reply(451, "4.5.0", f"{host} answered the final dot with {final}")
    for rcpt in accepted:
        results[rcpt] = final
    return finish()
