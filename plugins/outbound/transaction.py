"""One SMTP mail transaction on a connected client, with an outcome per recipient.

MAIL refused: every recipient gets that reply. RCPT: each recipient gets its
own reply. DATA and the final dot: the reply goes to every recipient whose RCPT
was accepted. Delivered means a 250 after the final dot and nothing else. A
connection lost at any point is a temporary failure for recipients without a
final outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.response import SMTPResponse

from mailpipe.core.errors import Reply
from mailpipe.core.message import Message, Outcome, RecipientResult

from .data import dot_stuffed, send_data
from .pipelining import Pipeline
from .pool import ConnectionPool, Opener, PoolKey
from .replies import reply_for
from .session import Session

_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
"""An address that aiosmtplib's quoting would give back as it is (the common case: no need to parse it)."""


class StaleSession(Exception):
    """A kept session said nothing to the RSET that opened its next transaction: the server had closed it
    while it was idle (or answered it with other than 2xx). Nothing was sent; the caller drops the session
    and takes another (``send_pooled``)."""


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


async def send_pooled(
    pool: ConnectionPool, key: PoolKey, open_new: Opener, message: Message, recipients: list[str], data: bytes, *,
    route: str, opened: Callable[[Session], None] | None = None,
) -> tuple[Session, list[RecipientResult]]:
    """One transaction on a session of ``pool`` for ``key``; the session used (given back) and the results.

    Called by the delivery plugins. ``open_new`` opens a session when no kept one is
    idle (its exceptions pass through: the caller maps them); ``opened`` is told of each
    session taken, before it is used. A kept session found closed by the server (no reply to
    the RSET that opens its transaction) is dropped and the next one taken: at most every
    idle session once, then a new one, which is never stale.
    """
    while True:
        session = await pool.acquire(key, open_new)
        if opened is not None:
            opened(session)
        results: list[RecipientResult] = []
        try:
            results = await send(session, message, recipients, data, route=route)
        except StaleSession:
            continue  # given back unusable (no results) in the finally clause
        except asyncio.CancelledError:
            # Cut in the middle of the transaction (shutdown grace over): drop the connection at once.
            # A QUIT would wait behind the unanswered command, up to the timeout, and hold up the exit.
            session.client.close()
            raise
        finally:
            pool.release(session, reusable=reusable(results))
        return session, results


class _Outcomes:
    """The reply for each recipient of one transaction, filled in as the server answers (both paths of ``send``)."""

    def __init__(self, session: Session, recipients: list[str], route: str) -> None:
        self.session = session
        self.recipients = recipients
        self.route = route
        self.started = time.monotonic()
        self.replies: dict[str, Reply] = {}

    def finish(self) -> list[RecipientResult]:
        """One result per recipient (each must have its reply by now)."""
        spent = time.monotonic() - self.started
        s = self.session
        return [RecipientResult(r, Outcome.of(self.replies[r]), self.replies[r], s.peer, s.address, self.route, spent)
                for r in self.recipients]

    def fail_rest(self, reply: Reply) -> list[RecipientResult]:
        """``reply`` for every recipient without a final outcome (none yet, or an accepted RCPT)."""
        for r in self.recipients:
            if r not in self.replies or 200 <= self.replies[r].code < 300:
                self.replies[r] = reply
        return self.finish()

    def delivered(self, accepted: list[str], final: Reply) -> list[RecipientResult]:
        """``final`` (the outcome of the final dot) for every accepted recipient; delivered means 250 only."""
        if final.code != 250 and 200 <= final.code < 300:
            final = Reply(451, "4.5.0", f"{self.session.peer} answered the final dot with {final}")
        for rcpt in accepted:
            self.replies[rcpt] = final
        return self.finish()


def _said(response: SMTPResponse, host: str) -> Reply:
    """The server's acceptance of the message, naming the server."""
    reply = Reply.parse(response.code, response.message)
    return Reply(reply.code, reply.enhanced, f"{host} said: {reply.text}")


def _refused(response: SMTPResponse, step: str, host: str) -> Reply:
    """A reply other than the one ``step`` needed, mapped as a raised aiosmtplib error would be."""
    return reply_for(aiosmtplib.SMTPResponseException(response.code, response.message), step, host)


async def send(
    session: Session, message: Message, recipients: list[str], data: bytes, *, route: str,
) -> list[RecipientResult]:
    """Run MAIL, RCPT for each recipient, DATA on ``session``; return one result per recipient.

    Called by ``send_pooled`` (and tests); ``route`` is the label the results carry. Never
    raises for the server's sake: every failure is an outcome, except that a kept session
    (``session.probe``) with no answer to its opening RSET raises ``StaleSession``.
    With a server that offers PIPELINING, [RSET,] MAIL, every RCPT and DATA go in one write.
    """
    client, host = session.client, session.peer
    out = _Outcomes(session, recipients, route)
    opts = mail_options(client, message, len(data))
    if isinstance(opts, Reply):
        return out.fail_rest(opts)
    encoding = "utf-8" if "SMTPUTF8" in opts else "ascii"
    if client.supports_extension("pipelining"):
        pipelined = _pipelined_commands(message.sender, recipients, opts, encoding, rset=session.probe is not None)
        payload = dot_stuffed(data) if pipelined is not None else None  # else send_data stuffs it
        if pipelined is not None and payload is not None:
            return await _send_pipelined(session, out, pipelined, payload)
    if session.probe is not None:  # a kept session of a server that does not pipeline: probe it on its own
        try:
            await client.rset(timeout=session.probe)
        except Exception as exc:  # noqa: BLE001 - closed while idle, timed out: not this session
            client.close()
            raise StaleSession(str(exc)) from exc
        finally:
            session.probe = None
    try:
        await client.mail(message.sender, options=opts, encoding=encoding)
    except aiosmtplib.SMTPResponseException as exc:
        with contextlib.suppress(Exception):  # a failing connection is closed by the pool
            await client.rset()
        return out.fail_rest(reply_for(exc, "MAIL FROM", host))
    except Exception as exc:  # noqa: BLE001 - any failure of the connection
        return out.fail_rest(reply_for(exc, "MAIL FROM", host))
    accepted: list[str] = []
    for rcpt in recipients:
        try:
            await client.rcpt(rcpt, encoding=encoding)
            accepted.append(rcpt)
        except aiosmtplib.SMTPResponseException as exc:
            out.replies[rcpt] = reply_for(exc, "RCPT TO", host)
        except Exception as exc:  # noqa: BLE001
            return out.fail_rest(reply_for(exc, "RCPT TO", host))
    if not accepted:
        with contextlib.suppress(Exception):
            await client.rset()
        return out.finish()
    try:
        final = _said(await send_data(client, data), host)
    except Exception as exc:  # noqa: BLE001 - a refusal, or no reply to the final dot: not delivered
        final = reply_for(exc, "DATA", host)
    return out.delivered(accepted, final)


def _pipelined_commands(sender: str, recipients: list[str], opts: list[str], encoding: str, *,
                        rset: bool) -> bytes | None:
    """``[RSET] MAIL FROM, RCPT TO..., DATA`` as one write, worded as aiosmtplib words them.

    None when an address needs what only aiosmtplib's own commands do (a parse error, a line
    break, a character the encoding cannot carry): ``send`` then takes the step-by-step path,
    which reports it as before.
    """
    try:
        addresses = [a if _PLAIN_ADDRESS.fullmatch(a) else quote_address(a)[1:-1] for a in (sender, *recipients)]
        if any("\r" in a or "\n" in a for a in addresses):
            return None
        lines = [b"RSET"] if rset else []
        lines.append(b" ".join([b"MAIL FROM:<" + addresses[0].encode(encoding) + b">",
                                *(o.encode("ascii") for o in opts)]))
        lines.extend(b"RCPT TO:<" + a.encode(encoding) + b">" for a in addresses[1:])
        lines.append(b"DATA")
    except (ValueError, UnicodeError):
        return None
    return b"\r\n".join(lines) + b"\r\n"


async def _send_pipelined(session: Session, out: _Outcomes, commands: bytes, payload: bytes) -> list[RecipientResult]:
    """The transaction with its commands pipelined (RFC 2920): one write, the replies read in order.

    A kept session opens with RSET in the same write: no reply to it (within ``session.probe``)
    means the server had closed the session while it was idle (``StaleSession``, nothing was
    sent). The server's replies map to outcomes exactly as in the step-by-step path; a 354 to
    DATA when no recipient was taken is answered with a lone dot (RFC 2920 3.1).
    """
    client, host = session.client, session.peer
    step = "MAIL FROM"
    probe, session.probe = session.probe, None
    try:
        with Pipeline(client) as pipe:
            try:
                pipe.write(commands)
                if probe is not None:
                    step = "RSET"
                    rset = await pipe.reply(timeout=probe)
                    if not 200 <= rset.code < 300:
                        raise StaleSession(f"{rset.code} {rset.message}")
            except aiosmtplib.SMTPTimeoutError as exc:  # a firewall forgot the idle connection, say
                if probe is not None:
                    raise StaleSession(str(exc)) from exc
                raise
            except aiosmtplib.SMTPServerDisconnected as exc:
                if probe is not None and not pipe.received:
                    raise StaleSession(str(exc)) from exc
                raise
            step = "MAIL FROM"
            mail = await pipe.reply()
            accepted: list[str] = []
            step = "RCPT TO"
            for rcpt in out.recipients:
                reply = await pipe.reply()
                if mail.code == 250 and reply.code in (250, 251):
                    accepted.append(rcpt)
                elif mail.code == 250:
                    out.replies[rcpt] = _refused(reply, "RCPT TO", host)
            step = "DATA"
            start = await pipe.reply()
            if mail.code != 250 or not accepted:
                if start.code == 354:  # the server wants a message nobody will send: end it at once
                    pipe.write(b".\r\n")
                    await pipe.reply()
                return out.fail_rest(_refused(mail, "MAIL FROM", host)) if mail.code != 250 else out.finish()
            if start.code != 354:
                final = _refused(start, "DATA", host)
            else:
                pipe.write(payload)
                end = await pipe.reply()
                final = _said(end, host) if end.code == 250 else _refused(end, "DATA", host)
    except StaleSession:
        client.close()
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the connection: no final outcome for the rest
        client.close()
        return out.fail_rest(reply_for(exc, step, host))
    return out.delivered(accepted, final)
