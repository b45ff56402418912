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
