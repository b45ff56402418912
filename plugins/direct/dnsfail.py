"""DNS failures as SMTP outcomes: which are permanent, which temporary, and the text shown.

The mapping (RFC 5321 section 5.1, RFC 7505, and what Postfix does):

==============================================  =====================================
NXDOMAIN for the recipient domain               550 5.1.2  permanent
no MX and no A/AAAA (NOERROR, no data)          550 5.1.2  permanent
null MX (``MX 0 .``, RFC 7505)                  556 5.1.10 permanent
MX list leads back to this gateway              554 5.4.6  permanent ("loops back to myself")
no MX host has an address (all NXDOMAIN/empty)  550 5.4.4  permanent
SERVFAIL, REFUSED, timeout, no DNS server       451 4.4.3  temporary (event ``dns.failure``)
==============================================  =====================================
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.resolver

from mailpipe.core.errors import Reply


class DnsFailure(Exception):
    """A recipient domain whose MX hosts cannot be had; ``reply`` is every recipient's outcome."""

    def __init__(self, reply: Reply, kind: str) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.kind = kind

    @property
    def temporary(self) -> bool:
        return self.reply.temporary


def nxdomain(domain: str) -> DnsFailure:
    return DnsFailure(Reply(550, "5.1.2", f"domain {domain} does not exist (DNS: NXDOMAIN)"), "nxdomain")


def no_data(domain: str) -> DnsFailure:
    return DnsFailure(Reply(550, "5.1.2", f"domain {domain} has no MX and no A/AAAA records"), "nodata")


def null_mx(domain: str) -> DnsFailure:
    reply = Reply(556, "5.1.10", f"domain {domain} does not accept mail (null MX, RFC 7505)")
    return DnsFailure(reply, "nullmx")


def loop(domain: str, hostname: str) -> DnsFailure:
    return DnsFailure(
        Reply(554, "5.4.6", f"mail for {domain} loops back to myself ({hostname} is its best MX)"), "loop"
    )


def no_mx_address(domain: str, detail: str) -> DnsFailure:
    return DnsFailure(Reply(550, "5.4.4", f"no MX host of {domain} has an address: {detail}"), "nohost")


def temporary(domain: str, what: str, detail: str, kind: str) -> DnsFailure:
    return DnsFailure(Reply(451, "4.4.3", f"DNS lookup of {what} for {domain} failed: {detail}"), kind)


def classify(exc: BaseException, domain: str, what: str) -> DnsFailure:
    """The outcome for a dnspython exception raised looking up ``what`` (e.g. "MX") of ``domain``.

    ``NoAnswer`` is not a failure by itself (it leads to the implicit MX) and is
    not handled here.
    """
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return nxdomain(domain)
    if isinstance(exc, dns.resolver.NoNameservers):
        errors = exc.kwargs.get("errors") or []
        detail = "; ".join(f"{_server(e[0])} answered {e[3]}" for e in errors) or "no server answered"
        kind = "servfail" if "SERVFAIL" in detail else "refused" if "REFUSED" in detail else "noserver"
        return temporary(domain, what, detail, kind)
    if isinstance(exc, dns.exception.Timeout):
        timeout = exc.kwargs.get("timeout")
        detail = f"timed out after {timeout:.1f}s" if isinstance(timeout, int | float) else "timed out"
        return temporary(domain, what, detail, "timeout")
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return temporary(domain, what, "no DNS server configured (set dns_servers)", "noserver")
    bad_name = dns.name.NameTooLong | dns.name.LabelTooLong | dns.name.EmptyLabel | dns.name.IDNAException
    if isinstance(exc, bad_name):
        return DnsFailure(Reply(553, "5.1.2", f"bad destination domain {domain!r}: {exc}"), "badname")
    return temporary(domain, what, f"{type(exc).__name__}: {_short(exc)}", "error")


def _server(text: str) -> str:
    """``Do53:127.0.1.53@2753`` -> ``127.0.1.53:2753``."""
    text = text.removeprefix("Do53:")
    addr, sep, port = text.rpartition("@")
    if not sep:
        return text
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
