"""What each host's policy led to: the TLS facts added to attempts, reports counted, events emitted.

Per MX host an attempt either did not try it (the policy refused it), failed to open a
session, or got one. ``PolicyOutcomes`` turns each into:

- the text added to the attempt's replies (``tls_note``): the policy, the TLS version and
  the verification result, e.g. ``[tls: policy dane, TLSv1.3, DANE-EE(3) 3 1 1 ... matched]``;
- counts for the TLS reports (a new session that met its policy is a success; a refused
  host, a failed handshake, an untrusted certificate or a missing STARTTLS is a failure
  by RFC 8460 result type; a reused session is not a new session);
- an event ``tls.failure.<result-type>`` (warning) per policy failure, which metrics count
  per kind, so per failure type.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from mailpipe.core.errors import Reply
from mailpipe.plugins.outbound.replies import OutboundError
from mailpipe.plugins.outbound.session import CertificateRejected, Session

from .security import HostSecurity, SecurityPlan
from .tlsrpt import TlsCounters

# OpenSSL verify codes (X509_V_ERR_*) and their RFC 8460 result types.
_VERIFY_CODES = {9: "certificate-expired", 10: "certificate-expired", 62: "certificate-host-mismatch"}


def failure_type(exc: OutboundError) -> str | None:
    """The RFC 8460 result type of a session that could not be opened; None when TLS was not the cause."""
    if isinstance(exc, CertificateRejected):
        return exc.verdict.failure or "validation-failure"
    if exc.reply.enhanced == "4.7.4":
        return "starttls-not-supported"
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return _VERIFY_CODES.get(cause.verify_code, "certificate-not-trusted")
        if isinstance(cause, ssl.SSLError):
            return "validation-failure"
        cause = cause.__cause__ or cause.__context__
        seen += 1
    if exc.reply.enhanced == "4.7.5":
        return "validation-failure"
    return None


def tls_note(hs: HostSecurity, session: Session | None = None) -> str:
    """``[tls: policy P, VERSION, VERIFICATION]``: what an attempt's text says about transport security."""
    parts = [f"policy {hs.policy}"]
    if session is not None:
        if session.tls:
            parts.append(session.tls_version or "TLS")
            if session.verdict is not None:
                parts.append(("" if session.verdict.trusted else "not trusted (reported only): ")
                             + session.verdict.text)
            elif hs.tls.verify:
                parts.append("certificate verified (CA chain and name)")
            else:
                parts.append("certificate not verified")
        else:
            parts.append("no TLS" + (f" (handshake failed: {session.tls_error})" if session.tls_error else ""))
    return f"[tls: {', '.join(parts)}]"


def tagged(reply: Reply, note: str) -> Reply:
    """``reply`` with ``note`` added to its text."""
    return Reply(reply.code, reply.enhanced, f"{reply.text} {note}" if reply.text else note)


class PolicyOutcomes:
    """Counts and tells what the hosts' policies led to, for one ``direct`` instance.

    ``counters`` is None when ``tls_reports`` is off (events are emitted all the same).
    """

    def __init__(self, counters: TlsCounters | None, emit: Callable[..., Any], now: Callable[[], float]) -> None:
        self.counters = counters
        self.emit = emit
        self.now = now

    def domain_failures(self, plan: SecurityPlan, message_id: str) -> None:
        """Failures of the domain as a whole (a policy that could not be fetched), once per attempt."""
        for policy, result_type, reason in plan.failures:
            if self.counters is not None:
                self.counters.failure(self.now(), plan.domain, policy, result_type, reason=reason)
            self._event(message_id, plan.domain, "", "mta-sts", result_type, reason, enforced=False)

    def refused(self, domain: str, hs: HostSecurity, message_id: str) -> None:
        """``hs`` was not tried: its policy refused it."""
        assert hs.refusal is not None
        self._failed(domain, hs, hs.failure or "validation-failure", hs.refusal.text, message_id,
                     receiving_ip=hs.host.addresses[0] if hs.host.addresses else None)

    def not_opened(self, domain: str, hs: HostSecurity, exc: OutboundError, message_id: str) -> None:
        """No session with ``hs``: counted when TLS (not the network) was the cause."""
        result_type = failure_type(exc)
        if result_type is not None and hs.report is not None:
            rejected = exc if isinstance(exc, CertificateRejected) else None
            self._failed(domain, hs, result_type, exc.reply.text, message_id,
                         receiving_ip=rejected.address if rejected else None,
                         sending_ip=rejected.local_address if rejected else None)

    def opened(self, domain: str, hs: HostSecurity, session: Session, message_id: str) -> None:
        """A session with ``hs``: a new one is a success, or for MTA-STS testing maybe a reported failure."""
        if session.messages > 0 or hs.report is None:
            return
        failure, reason = "", ""
        if hs.testing:
            if hs.failure:
                failure, reason = hs.failure, hs.why
            elif not session.tls:
                failure = "starttls-not-supported" if session.tls_error is None else "validation-failure"
                reason = session.tls_error or f"{hs.host.name} does not offer STARTTLS"
            elif session.verdict is not None and not session.verdict.trusted:
                failure, reason = session.verdict.failure or "validation-failure", session.verdict.text
        if failure:
            self._failed(domain, hs, failure, reason, message_id, receiving_ip=session.address,
                         sending_ip=_local_address(session), enforced=False)
        elif self.counters is not None:
            self.counters.success(self.now(), domain, hs.report)

    def _failed(self, domain: str, hs: HostSecurity, result_type: str, reason: str, message_id: str, *,
                receiving_ip: str | None, sending_ip: str | None = None, enforced: bool = True) -> None:
        if self.counters is not None and hs.report is not None:
            self.counters.failure(self.now(), domain, hs.report, result_type, mx_host=hs.host.name,
                                  receiving_ip=receiving_ip, sending_ip=sending_ip, reason=reason)
        self._event(message_id, domain, hs.host.name, hs.policy, result_type, reason, enforced=enforced)

    def _event(self, message_id: str, domain: str, host: str, policy: str, result_type: str, reason: str, *,
               enforced: bool) -> None:
        where = f" at {host}" if host else ""
        what = "enforced" if enforced else "reported only"
        self.emit(f"tls.failure.{result_type}",
                  f"{message_id}: {policy} policy of {domain}{where}: {result_type} ({what}): {reason}",
                  level="warning", message=message_id, domain=domain, host=host, policy=policy,
                  result_type=result_type, enforced=enforced)


def _local_address(session: Session) -> str | None:
    transport = session.client.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return str(sockname[0]) if sockname else None
