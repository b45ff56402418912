"""Options of ``chain: - direct: {...}`` ("send messages direct"), validated before anything starts."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mailpipe.core.settings import Duration, Strict, split_host_port
from mailpipe.plugins.limits.options import BackoffOptions, DirectLimitSpec


def parse_dns_server(text: str) -> tuple[str, int]:
    """``"192.0.2.53"``, ``"192.0.2.53:5353"``, ``"::1"`` or ``"[::1]:5353"`` -> (address, port).

    Only IP addresses: naming the DNS server by host name would need DNS to find DNS.
    """
    text = text.strip()
    if ":" in text and not text.startswith("[") and text.count(":") > 1:
        host, port = text, 53  # a bare IPv6 address
    else:
        host, port = split_host_port(text, 53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"expected a DNS server IP address, optionally :port (IPv6 as [::1]:53), got {text!r}"
        ) from None
    return host, port


class DirectOptions(Strict):
    """Options of ``chain: - direct: {...}``; every one has a default, so ``direct: {}`` works."""

    dns_servers: list[str] = Field(
        default_factory=list,
        description='"Resolve destination\'s domain using DNS": "host" or "host:port"; none: system resolver',
    )
    port: int | None = Field(None, ge=1, le=65535, description="default: delivery.port (25)")
    timeout: Duration | None = Field(None, gt=0, description="per SMTP reply; default: delivery.timeout")
    connect_timeout: Duration | None = Field(None, gt=0, description="per MX host connect; default: timeout")
    dns_timeout: Duration = Field(10.0, gt=0, description="a whole DNS lookup, all servers and retries")
    tls: Literal["opportunistic", "required", "none"] = "opportunistic"
    ip_version: Literal["any", "ipv4", "ipv6"] = "any"
    prefer_ipv6: bool = True
    happy_eyeballs_delay: Duration = Field(0.3, ge=0, description="start the next address after this long")
    max_hosts_per_attempt: int = Field(5, ge=1)
    max_connections: int = Field(50, ge=1, description="deliveries in progress at once, all domains")
    max_connections_per_domain: int = Field(10, ge=1, description="deliveries in progress at once per domain")
    connection_reuse: bool = True
    idle_timeout: Duration = Field(10.0, ge=0, description="how long an unused connection is kept for reuse")
    max_messages_per_connection: int = Field(100, ge=1)
    limits: list[DirectLimitSpec] = Field(
        default_factory=list, description="sending limits per sender or recipient domain; docs/policy.md"
    )
    backoff: BackoffOptions = Field(default_factory=BackoffOptions,
                                    description='how delivery to a domain slows when it answers "too many ..."')

    # -- transport security (docs/direct.md, "Transport security") --
    dnssec: Literal["none", "validating"] = Field(
        "none", description="validating: the dns_servers validate DNSSEC, so their AD bit is trusted (DANE needs it)",
    )
    dane: Literal["off", "opportunistic", "required"] | None = Field(
        None, description="DANE (RFC 7672); default: opportunistic when dnssec is validating, else off",
    )
    mta_sts: bool = Field(True, description="fetch and honour MTA-STS policies (RFC 8461)")
    mta_sts_port: int = Field(443, ge=1, le=65535, description="port of the policy servers (only tests change it)")
    ca_file: Path | None = Field(
        None, description="trust anchors for verified TLS (MTA-STS MX hosts, policy servers); default: system CAs",
    )
    tls_reports: bool = Field(True, description="RFC 8460 daily aggregate reports to domains with a policy")
    tls_reports_from: str | None = Field(None, description="sender of the reports; default: postmaster@hostname")

    @field_validator("tls_reports_from")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and (value.count("@") != 1 or not all(value.split("@")) or " " in value):
            raise ValueError(f"expected a mail address (local@domain), got {value!r}")
        return value

    @field_validator("dns_servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_dns_server(entry)
        return value

    @model_validator(mode="after")
    def _limits(self) -> DirectOptions:
        if self.max_connections_per_domain > self.max_connections:
            raise ValueError("max_connections_per_domain cannot be more than max_connections")
        if self.dane in ("opportunistic", "required") and self.dnssec != "validating":
            raise ValueError(
                f"dane: {self.dane} needs dnssec: validating (DANE trusts only the AD bit of a validating resolver)"
            )
        return self

    @property
    def dane_mode(self) -> Literal["off", "opportunistic", "required"]:
        """``dane`` as in force: given, else opportunistic with a validating resolver, else off."""
        if self.dane is not None:
            return self.dane
        return "opportunistic" if self.dnssec == "validating" else "off"

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        """The DNS servers as (address, port), in the order given."""
        return [parse_dns_server(s) for s in self.dns_servers]
