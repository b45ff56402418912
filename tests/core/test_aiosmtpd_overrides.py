"""The private parts of aiosmtpd that core/intake/protocol.py overrides are still there, in the shape it expects.

If an aiosmtpd upgrade renames or reshapes one of them, these tests fail by name
instead of the intake silently losing its DATA reader, fast path or session table.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

from aiosmtpd.smtp import SMTP

from mailpipe.core.intake.protocol import PRIVATE_NAMES, GatewaySMTP


def test_the_installed_aiosmtpd_is_in_the_tested_range() -> None:
    major, minor, *_ = (int(p) for p in version("aiosmtpd").split(".")[:2])
    assert (major, minor) == (1, 4), f"aiosmtpd {version('aiosmtpd')}: core/intake/protocol.py is tested on 1.4.x"


def test_every_private_name_used_exists() -> None:
    source = inspect.getsource(SMTP)
    for name in PRIVATE_NAMES:
        assert hasattr(SMTP, name) or f"self.{name} =" in source, f"aiosmtpd.smtp.SMTP has no {name} any more"


def test_overridden_methods_keep_their_signatures() -> None:
    assert list(inspect.signature(SMTP._call_handler_hook).parameters) == ["self", "command", "args"]
    assert list(inspect.signature(SMTP._getaddr).parameters) == ["self", "arg"]
    assert list(inspect.signature(SMTP._set_post_data_state).parameters) == ["self"]
    assert list(inspect.signature(SMTP._reset_timeout).parameters)[:1] == ["self"]
    assert inspect.iscoroutinefunction(SMTP._call_handler_hook)
    assert inspect.iscoroutinefunction(SMTP.smtp_DATA)


def test_the_reader_is_the_stream_aiosmtpd_reads_commands_from() -> None:
    """smtp_DATA reads the message from ``self._reader``: the same stream aiosmtpd reads command lines from."""
    assert "await self._reader.readuntil()" in inspect.getsource(SMTP._handle_client)


def test_getaddr_fast_path_agrees_with_aiosmtpd() -> None:
    """The fast path gives what aiosmtpd's own parser gives for plain paths, and defers to it otherwise."""
    proto = GatewaySMTP.__new__(GatewaySMTP)
    proto.local_part_limit = 0
    for arg in ("<alice@example.org>", "<a.b+c@mail.example.org> SIZE=100", "<x@y>"):
        assert proto._getaddr(arg) == SMTP._getaddr(proto, arg)
    assert proto._getaddr('<"odd local"@example.org>') == SMTP._getaddr(proto, '<"odd local"@example.org>')


def test_the_public_parts_the_protocol_replaces_keep_their_shape() -> None:
    """push, handle_exception, STARTTLS and the AUTH mechanisms that GatewaySMTP replaces (issue 14)."""
    import aiosmtpd.smtp as smtp

    assert list(inspect.signature(SMTP.push).parameters) == ["self", "status"]
    assert list(inspect.signature(SMTP.handle_exception).parameters) == ["self", "error"]
    assert list(inspect.signature(SMTP.challenge_auth).parameters)[:2] == ["self", "challenge"]
    for name in ("auth_PLAIN", "auth_LOGIN"):  # found by name (``auth_`` + mechanism) on the protocol object
        assert list(inspect.signature(getattr(SMTP, name)).parameters) == ["self", "_", "args"]
        assert inspect.iscoroutinefunction(getattr(GatewaySMTP, name))
    assert 'mname.startswith("auth_")' in inspect.getsource(SMTP.__init__)
    assert issubclass(smtp.TLSSetupException, Exception)
    # a failed STARTTLS handshake reaches handle_exception as TLSSetupException, and the connection is closed
    handling = inspect.getsource(SMTP._handle_client)
    assert "self.handle_exception(error)" in handling and "isinstance(error, TLSSetupException)" in handling
    assert "raise TLSSetupException() from error" in inspect.getsource(SMTP.smtp_STARTTLS)


def test_the_constructor_builds_what_aiosmtpds_builds() -> None:
    """GatewaySMTP's constructor does aiosmtpd's reflection once per class (issue 13); every attribute it sets
    is the one aiosmtpd's own ``SMTP.__init__`` sets, for the keyword arguments the intake passes and more."""
    import asyncio
    import ssl

    import aiosmtpd.smtp as smtp

    from mailpipe.core.intake.protocol import MODULE_NAMES, ConnectionSlots

    for name in MODULE_NAMES:
        assert hasattr(smtp, name), f"aiosmtpd.smtp has no {name} any more"
    assert list(inspect.signature(SMTP.__init__).parameters) == [
        "self", "handler", "data_size_limit", "enable_SMTPUTF8", "decode_data", "hostname", "ident", "tls_context",
        "require_starttls", "timeout", "auth_required", "auth_require_tls", "auth_exclude_mechanism",
        "auth_callback", "command_call_limit", "authenticator", "proxy_protocol_timeout", "loop"]

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001
            return responses

        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
            return "250 OK"

        async def auth_CRAM__MD5(self, server, args):  # noqa: ANN001, N802
            return None

    def plain(value: object, me: object) -> object:
        """Bound methods as (function, "me" or the object bound); dicts and tuples item by item."""
        if inspect.ismethod(value):
            return (value.__func__, "me" if value.__self__ is me else id(value.__self__))
        if isinstance(value, dict):
            return {k: plain(v, me) for k, v in value.items()}
        if isinstance(value, tuple):
            return type(value)(*(plain(v, me) for v in value)) if hasattr(value, "_fields") else \
                tuple(plain(v, me) for v in value)
        return value

    async def compare() -> None:
        slots = ConnectionSlots(10, lambda *a: None, lambda *a: None, lambda *a: None)
        handler = Handler()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        for kwargs in (
            dict(hostname="gw.test", ident="mailpipe", data_size_limit=1000, enable_SMTPUTF8=True, decode_data=False,
                 timeout=300, auth_required=False, auth_require_tls=True, auth_exclude_mechanism=["LOGIN", "PLAIN"]),
            dict(hostname="gw.test", ident="mailpipe", data_size_limit=None, tls_context=context, timeout=30,
                 auth_required=True, auth_require_tls=True, command_call_limit={"*": 5, "NOOP": 2}),
            dict(hostname="gw.test", command_call_limit=3, proxy_protocol_timeout=5.0),
        ):
            ours = GatewaySMTP(handler, slots=slots, **kwargs)
            theirs = GatewaySMTP.__new__(GatewaySMTP)
            SMTP.__init__(theirs, handler, **kwargs)
            mine = {k for k in vars(ours) if k not in vars(theirs)}
            assert mine <= {"_slots", "_data_timeout", "_relay_login", "_client", "_counted", "_refused",
                            "_reply_lines", "_idle_deadline", "_messages", "_after_reply"}, mine
            for key, value in vars(theirs).items():
                assert key in vars(ours), key
                if key in ("_stream_reader_wr", "_strong_reader", "_closed", "_loop"):
                    assert type(vars(ours)[key]) is type(value), key
                    continue  # per-object plumbing of asyncio.StreamReaderProtocol, made by the same call
                assert plain(vars(ours)[key], ours) == plain(value, theirs), key
            assert set(ours._auth_methods) == set(theirs._auth_methods) and "CRAM-MD5" in ours._auth_methods

    asyncio.run(compare())


def test_command_logging_is_skipped_when_quiet_and_still_masks_auth_when_on(caplog) -> None:  # noqa: ANN001
    """The command loop's ``sanitized_log`` is replaced by one that first asks ``mail.log``: at WARNING (what
    logs.py sets) nothing is formatted or written; at INFO aiosmtpd's own masking still hides AUTH data."""
    import logging

    import aiosmtpd.smtp as smtp

    import mailpipe.core.intake.protocol as protocol

    assert smtp.sanitized_log is protocol._sanitized_log
    line = b"AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n"
    with caplog.at_level(logging.WARNING, logger="mail.log"):
        smtp.sanitized_log(smtp.log.info, "%r >> %r", ("127.0.0.1", 1), line)
    assert not caplog.records
    with caplog.at_level(logging.INFO, logger="mail.log"):
        smtp.sanitized_log(smtp.log.info, "%r >> %r", ("127.0.0.1", 1), line)
    assert len(caplog.records) == 1
    assert "********" in caplog.text and "AGFsaWNlAHMzY3JldA" not in caplog.text
