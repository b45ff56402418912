"""SMTP AUTH with the smarthost: mechanism choice, XOAUTH2 tokens, failures without secrets.

``smtp_login`` logs a connected client in with ``Credentials`` and raises
``LoginFailed`` (an ``OutboundError`` whose reply is always temporary: a
refused login is a configuration problem, not the message's; and never worth
trying on the next server) when it cannot. Nothing it raises
or returns contains the password or token: replies are rebuilt from the
server's code and a scrubbed text, and exception chains are cut. The SASL
exchange is run here (``execute_command`` with aiosmtplib's encoders) so that
every blob the client sends — PLAIN, LOGIN, CRAM-MD5, XOAUTH2 — is known to the
``Scrubber`` before it leaves, in base64 and decoded.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import aiosmtplib
from aiosmtplib.auth import auth_crammd5_verify, auth_login_encode, auth_plain_encode, auth_xoauth2_encode

from mailpipe.core.errors import Reply
from mailpipe.core.message import Credentials
from mailpipe.core.tokencommand import TokenCommandError, run_token_command

from ..outbound.replies import OutboundError, Scrubber, reply_for

#: Password mechanisms in order of preference for ``mechanism: auto`` (strongest first).
AUTO_ORDER = ("cram-md5", "plain", "login")


class LoginFailed(OutboundError):
    """The smarthost login could not be made; ``reply`` is temporary and free of secrets.

    ``rejected`` is true when the server refused the name/password (535 and
    friends), false for a failure around it (no AUTH offered, connection lost).
    ``repeated`` marks a login not even tried because the same one was just rejected.
    """

    def __init__(self, reply: Reply, *, rejected: bool, repeated: bool = False) -> None:
        super().__init__(reply, next_host=False)
        self.rejected = rejected
        self.repeated = repeated


def is_encrypted(client: aiosmtplib.SMTP) -> bool:
    """Whether the connection runs over TLS (implicit or after STARTTLS)."""
    return client.is_connected and client.get_transport_info("sslcontext") is not None


def offered_mechanisms(client: aiosmtplib.SMTP) -> list[str]:
    """AUTH mechanisms the server offered in its EHLO reply, lower case."""
    return [m.lower() for m in client.server_auth_methods]


def choose_mechanism(wanted: str, offered: list[str], *, has_token: bool) -> str | None:
    """The mechanism to use: ``wanted`` if offered; for ``auto`` the strongest offered; else None."""
    if wanted != "auto":
        return wanted if wanted in offered else None
    if has_token and "xoauth2" in offered:
        return "xoauth2"
    return next((m for m in AUTO_ORDER if m in offered), None)


def secrets_of(credentials: Credentials, token: str | None = None) -> Scrubber:
    """A scrubber for every secret a reply must not show for this login (the blobs are added as they are sent)."""
    scrub = Scrubber()
    if credentials.password is not None:
        scrub.add_secret(credentials.password.get_secret_value())
    if credentials.token is not None:
        scrub.add_secret(credentials.token.get_secret_value())
    if token:
        scrub.add_secret(token)
    return scrub


async def fetch_token(command: list[str] | str, timeout: float) -> str:
    """Run ``command`` and return the first line it prints: an XOAUTH2 access token.

    A list is run as argv, a string by ``/bin/sh -c`` (``mailpipe.core.tokencommand``). Raises
    ``LoginFailed`` (with the start of the command's stderr, never what it printed on stdout)
    when it fails, times out or prints nothing.
    """
    try:
        return await run_token_command(command, timeout)
    except TokenCommandError as exc:
        detail = Scrubber([exc.printed])(exc.detail) if exc.printed else exc.detail
        raise LoginFailed(Reply(451, "4.7.0", str(exc) + (f": {detail}" if detail else "")), rejected=False) from None


async def smtp_login(
    client: aiosmtplib.SMTP, credentials: Credentials, *, host: str, allow_plaintext: bool,
    token_command: list[str] | str | None = None, timeout: float = 60.0,
    token_source: Callable[[], Awaitable[str]] | None = None,
) -> str:
    """AUTH on a connected client (after EHLO/STARTTLS); return the mechanism used.

    Refuses, before sending anything, to log in over a connection without TLS
    unless ``allow_plaintext``. Tries exactly one mechanism (a wrong password
    is not retried with another mechanism, so one mistake is one failed login
    at the ISP), except that a server answering 504 "unrecognized mechanism"
    to one it offered gets the next. Raises ``LoginFailed``. An XOAUTH2 token comes from
    ``credentials.token``, else ``token_source`` (OAuth2 tokens mailpipe fetches), else ``token_command``.
    """
    user = credentials.username or ""
    who = f"smarthost login as {user} at {host}"
    if not is_encrypted(client) and not allow_plaintext:
        raise LoginFailed(Reply(451, "4.7.0", f"{who} refused: the connection is not encrypted (no TLS) and "
                                               "allow_plaintext_auth is not set; the password was not sent"),
                          rejected=False)
    offered = offered_mechanisms(client)
    if not client.supports_extension("auth") or not offered:
        hint = "" if is_encrypted(client) else " (some servers offer AUTH only after STARTTLS)"
        raise LoginFailed(Reply(451, "4.7.0", f"{who} impossible: the server offers no AUTH{hint}"), rejected=False)
    token = credentials.token.get_secret_value() if credentials.token is not None else None
    has_token = token is not None or token_command is not None or token_source is not None
    wanted = credentials.mechanism or "auto"
    candidates: list[str] = []
    first = choose_mechanism(wanted, offered, has_token=has_token)
    if first is None:
        asked = wanted.upper() if wanted != "auto" else "PLAIN, LOGIN or CRAM-MD5"
        offers = " ".join(m.upper() for m in offered)
        raise LoginFailed(Reply(451, "4.7.0", f"{who} impossible: the server does not offer AUTH {asked} "
                                               f"(it offers {offers})"), rejected=False)
    candidates.append(first)
    if wanted == "auto":
        candidates += [m for m in AUTO_ORDER if m in offered and m not in candidates]
    if first == "xoauth2" and token is None and token_source is not None:
        token = await token_source()
    elif first == "xoauth2" and token is None and token_command is not None:
        token = await fetch_token(token_command, timeout)
    scrub = secrets_of(credentials, token)
    for mechanism in candidates:
        try:
            await _auth(client, mechanism, user, credentials, token, timeout, scrub)
            return mechanism
        except aiosmtplib.SMTPResponseException as exc:
            text = scrub(" ".join(exc.message.split()))
            server = Reply.parse(exc.code, text)
            if exc.code == 504 and mechanism != candidates[-1]:
                continue
            rejected = exc.code in (535, 534, 538) or exc.code >= 500
            verb = "failed" if rejected else "did not succeed"
            raise LoginFailed(Reply(451, "4.7.8" if exc.code == 535 else "4.7.0",
                                    f"{who} ({mechanism.upper()}) {verb}: {server}"), rejected=rejected) from None
        except Exception as exc:  # noqa: BLE001 - timeout, connection lost
            reply = reply_for(exc, f"AUTH {mechanism.upper()}", host)
            raise LoginFailed(Reply(451, "4.7.0", scrub(f"{who} did not finish: {reply}")),
                              rejected=False) from None
    raise AssertionError("unreachable")  # pragma: no cover


async def _auth(client: aiosmtplib.SMTP, mechanism: str, user: str, credentials: Credentials,
                token: str | None, timeout: float, scrub: Scrubber) -> None:
    """One SASL exchange; each blob is given to ``scrub`` before it is sent. Raises ``SMTPResponseException``."""
    password = credentials.password.get_secret_value() if credentials.password is not None else ""

    async def send(*args: bytes) -> aiosmtplib.SMTPResponse:
        return await client.execute_command(*args, timeout=timeout)

    if mechanism == "plain":
        blob = auth_plain_encode(user, password)
        scrub.add_blob(blob)
        response = await send(b"AUTH", b"PLAIN", blob)
    elif mechanism == "login":
        name, secret = auth_login_encode(user, password)
        scrub.add_blob(secret)
        response = await send(b"AUTH", b"LOGIN", name)
        if response.code == 334:
            response = await send(secret)
    elif mechanism == "cram-md5":
        response = await send(b"AUTH", b"CRAM-MD5")
        if response.code == 334:
            blob = auth_crammd5_verify(user, password, response.message)
            scrub.add_blob(blob)
            scrub.add_secret(blob_digest(blob))
            response = await send(blob)
    elif mechanism == "xoauth2":
        blob = auth_xoauth2_encode(user, token or "")
        scrub.add_blob(blob)
        response = await send(b"AUTH", b"XOAUTH2", blob)
        if response.code == 334:  # the server's error challenge: an empty line gets the final reply
            response = await send(b"")
    else:  # pragma: no cover - options allow only the above
        raise ValueError(f"unknown mechanism {mechanism}")
    if response.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)


def blob_digest(blob: bytes) -> str:
    """The HMAC digest in a CRAM-MD5 response (``base64(user SP digest)``): a secret of its own."""
    return base64.b64decode(blob).rpartition(b" ")[2].decode("ascii", "replace")
