"""The configuration models (pydantic): every top-level key and what it expects.

Plugin options are not here: each plugin validates its own (``Plugin.Options``),
see ``config.py`` for how the two are put together.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .durations import parse_duration, parse_size
from .files import FileKind, file_problem, pair_problem
from .paths import default_state_dir, resolve

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in config as ``30s``, ``15m``, ``4h``, ``2d`` (or a number of seconds)."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in config as ``10M``, ``512K`` (or a number of bytes)."""

TlsMode = Literal["none", "starttls", "implicit"]


def _email_address(value: str) -> str:
    if "@" not in value:
        raise ValueError(f"expected an email address, got {value!r}")
    return value


EmailAddress = Annotated[str, AfterValidator(_email_address)]
"""A mail address: only the ``@`` is checked (``expected an email address`` otherwise)."""


def base_dir(info: ValidationInfo) -> Path | None:
    """The config file's folder from the validation context (the loader gives it; None: files are not checked)."""
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    return base if isinstance(base, Path) else None


def _checked(kind: FileKind) -> AfterValidator:
    def check(value: Path, info: ValidationInfo) -> Path:
        base = base_dir(info)
        if base is None:
            return value
        path = resolve(value, base)
        problem = file_problem(path, kind)
        if problem:
            raise ValueError(problem)
        return path

    return AfterValidator(check)


CaFile = Annotated[Path, _checked("ca")]
"""A PEM file of CA certificates; when loaded from a file it is made absolute and checked (exists, readable, PEM)."""

CertFile = Annotated[Path, _checked("cert")]
"""A PEM certificate (chain) file, made absolute and checked at load like ``CaFile``."""

KeyFile = Annotated[Path, _checked("key")]
"""A PEM private key file, made absolute and checked at load like ``CaFile``."""


def check_pair(cert: Path | None, key: Path | None, info: ValidationInfo) -> None:
    """At load (a base folder in the context): ValueError unless ``cert`` and ``key`` load as one identity."""
    if cert is not None and key is not None and base_dir(info) is not None:
        problem = pair_problem(cert, key)
        if problem:
            raise ValueError(problem)


def check_tls_files(tls: str, cert: Path | None, key: Path | None, info: ValidationInfo) -> None:
    """For a server with TLS on (``tls`` is its option's value as the message shows it): ValueError unless
    both ``cert`` and ``key`` are given and (``check_pair``) load as one identity.

    Called by the validators of the intake's listeners and of the console.
    """
    if cert is None or key is None:
        raise ValueError(f"tls: {tls} needs both cert and key")
    check_pair(cert, key, info)


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def split_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port``, ``v6`` or ``host`` (with ``default_port``)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"expected host:port, got {text!r}")
    if not port:
        if default_port is None:
            raise ValueError(f"expected host:port, got {text!r}")
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected a port number 1-65535 in {text!r}")
    return host, int(port)


def _host_port(value: str) -> str:
    split_host_port(value)
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]
"""A ``host:port`` (or ``[v6]:port``) address, checked by ``split_host_port`` and kept as written."""


class ListenSpec(Strict):
    """One intake listener. Written as ``"127.0.0.1:2525"`` or as a mapping."""

    address: HostPort
    tls: TlsMode = "none"
    cert: CertFile | None = None
    key: KeyFile | None = None
    require_auth: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"address": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _tls_needs_cert(self, info: ValidationInfo) -> ListenSpec:
        if self.cert is not None and self.tls == "none":
            self.tls = "starttls"
        if self.tls != "none":
            check_tls_files(self.tls, self.cert, self.key, info)
        return self

    @property
    def host(self) -> str:
        return split_host_port(self.address)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.address)[1]


class RelayUser(Strict):
    """A login that may relay from outside ``relay.networks`` (after AUTH over TLS)."""

    username: str
    password_hash: str = Field(description="argon2 hash, made with `pipeline hash-password`")

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, value: str) -> str:
        if not value.startswith("$argon2"):
            raise ValueError("expected an argon2 hash ($argon2id$...); make one with `pipeline hash-password`")
        return value


class RelaySettings(Strict):
    """Who may relay: clients in ``networks`` without logging in; ``users`` after AUTH."""

    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=lambda: [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    )
    users: list[RelayUser] = Field(default_factory=list)

    @field_validator("networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, list):
            for v in value:
                if not isinstance(v, str | ipaddress.IPv4Network | ipaddress.IPv6Network):
                    shown = str(v).lower() if isinstance(v, bool) else v  # as YAML writes it
                    raise ValueError(f"expected networks such as 192.0.2.0/24 or 2001:db8::/32, got {shown}")
            return [ipaddress.ip_network(v, strict=False) if isinstance(v, str) else v for v in value]
        return value


class IntakeSettings(Strict):
    """Limits of the SMTP intake.

    ``max_connections_per_client`` caps the connections of one client address (Postfix's
    ``smtpd_client_connection_count_limit``; never more than ``max_connections``).
    ``data_timeout`` is the whole time one message's DATA may take, however steadily it trickles
    (``timeout`` is the idle time between two reads). A client address with ``max_auth_failures``
    failed logins within ``auth_failure_window`` is cut (``421``); each failure is answered after
    ``auth_failure_delay`` times the number of that address's recent failures.
    """

    max_message_size: Size = 50 * 1024 * 1024
    max_recipients: int = Field(1000, ge=1)
    max_connections: int = Field(200, ge=1)
    max_connections_per_client: int = Field(50, ge=1)
    timeout: Duration = 300.0
    data_timeout: Duration = Field(600.0, gt=0)
    max_auth_failures: int = Field(10, ge=1)
    auth_failure_window: Duration = Field(900.0, gt=0)
    auth_failure_delay: Duration = Field(1.0, ge=0)


class DeliverySettings(Strict):
    """The seed page's connection and advanced settings, plus scheduler limits."""

    send_immediately: bool = True
    schedule: list[str] = Field(default_factory=list)
    port: int = Field(25, ge=1, le=65535)
    timeout: Duration = 60.0
    concurrency: int = Field(20, ge=1)
    shutdown_grace: Duration = 30.0
    default_retry: Duration = 900.0
    intake_first: Duration = Field(10.0, ge=0, description="during a burst of incoming mail that fills a "
                                   "worker's core, deliveries run one at a time for up to this long; 0 = off; "
                                   "docs/workers.md")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: list[str]) -> list[str]:
        from croniter import croniter

        for expr in value:
            if not croniter.is_valid(expr):
                raise ValueError(f"expected a cron expression such as '0 */2 * * *', got {expr!r}")
        return value


class Pop3Settings(Strict):
    """The POP3 server of an Internet Mail Account (for POP-before-SMTP and for collecting mail).

    The login is USER/PASS, or APOP (``apop: true``), or SASL XOAUTH2 (``xoauth2: true``,
    the access token printed by ``token_command``). USER/PASS without TLS is refused for
    collection unless ``allow_plaintext_auth`` is set.
    """

    server: str
    port: int | None = Field(None, ge=1, le=65535)
    tls: TlsMode = "implicit"
    ca_file: CaFile | None = None
    verify: bool = True
    apop: bool = False
    xoauth2: bool = False
    token_command: list[str] | str | None = Field(
        None, description="xoauth2: a command that prints a fresh access token (default: the account's password)")
    allow_plaintext_auth: bool = False

    @model_validator(mode="after")
    def _one_mechanism(self) -> Pop3Settings:
        if self.apop and self.xoauth2:
            raise ValueError("apop and xoauth2 are two different logins: choose one")
        if self.token_command is not None and not self.xoauth2:
            raise ValueError("token_command is only used with xoauth2: true")
        return self


class DistributeSettings(Strict):
    """Multidrop: one ISP mailbox for several people; recipients are read from header fields."""

    headers: list[str] = Field(
        default_factory=lambda: ["Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc"],
        description="header fields whose addresses are recipients (only those of ``domains``)")
    domains: list[str] = Field(min_length=1, description="the office's own domains: only their addresses count")
    default: EmailAddress = Field(description="the recipient of a message none of whose addresses matched")

    @field_validator("domains")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in value]


class CollectSettings(Strict):
    """Collecting an account's mailbox into the queue (``accounts[].collect``; see docs/collect.md).

    ``every``: how often (default 5m; when ``delivery.send_immediately`` is false and
    ``every`` is not given, at the ``delivery.schedule`` windows). Exactly one of
    ``deliver_to`` (every message to one internal address) and ``distribute`` (multidrop).
    """

    every: Duration | None = Field(None, gt=0)
    leave_on_server: bool = False
    delete_after: Duration | None = Field(None, gt=0, description="with leave_on_server: remove after this long")
    max_size: Size = 25 * 1024 * 1024
    deliver_to: str | None = None
    distribute: DistributeSettings | None = None
    max_hops: int = Field(30, ge=1, description="a message with more Received fields is a loop: held, not sent")

    @model_validator(mode="after")
    def _one_target(self) -> CollectSettings:
        if (self.deliver_to is None) == (self.distribute is None):
            raise ValueError("give exactly one of deliver_to (one internal recipient) or distribute (multidrop)")
        if self.deliver_to is not None and "@" not in self.deliver_to:
            raise ValueError(f"deliver_to: expected an email address, got {self.deliver_to!r}")
        if self.delete_after is not None and not self.leave_on_server:
            raise ValueError("delete_after needs leave_on_server: true (otherwise mail is removed once collected)")
        return self


class ClientCertificate(Strict):
    """An OAuth2 client's certificate and private key (PEM): the client proves itself with a signed
    JWT assertion (RFC 7523) instead of a secret."""

    cert_file: Path
    key_file: Path


OAuth2Flow = Literal["client_credentials", "refresh_token"]


class OAuth2Settings(Strict):
    """``oauth2:`` — where and how mailpipe fetches the OAuth2 access tokens of an XOAUTH2 login itself.

    ``client_credentials`` (RFC 6749 section 4.4; Microsoft 365 app-only): the client's own
    identity, with ``client_secret`` or ``client_certificate``. ``refresh_token`` (section 6;
    Gmail, Microsoft delegated): a refresh token from a one-time consent, inline or in
    ``refresh_token_file`` (a rotated refresh token is written back there). Used by the
    smarthost's ``auth.oauth2`` and by an account's ``oauth2``.
    """

    flow: OAuth2Flow
    token_url: str = Field(description="the token endpoint (https://...)")
    client_id: str
    client_secret: SecretStr | None = None
    client_certificate: ClientCertificate | None = None
    scope: str | None = Field(None, description="space-separated scopes, e.g. https://outlook.office365.com/.default")
    refresh_token: SecretStr | None = None
    refresh_token_file: Path | None = None
    ca_file: Path | None = Field(None, description="CA certificates for the token endpoint (default: system CAs)")

    @field_validator("token_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.lower().startswith("https://") or len(value) <= len("https://"):
            raise ValueError(f"expected an https:// URL (the client secret must not travel in clear), got {value!r}")
        return value

    @field_validator("scope", mode="before")
    @classmethod
    def _scopes(cls, value: Any) -> Any:
        return " ".join(str(v) for v in value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _consistent(self) -> OAuth2Settings:
        if self.client_secret is not None and self.client_certificate is not None:
            raise ValueError("give client_secret or client_certificate, not both")
        if self.flow == "client_credentials":
            if self.client_secret is None and self.client_certificate is None:
                raise ValueError("flow: client_credentials needs client_secret or client_certificate")
            if self.refresh_token is not None or self.refresh_token_file is not None:
                raise ValueError("refresh_token and refresh_token_file are only used with flow: refresh_token")
            if not self.scope:
                raise ValueError("flow: client_credentials needs scope (Microsoft 365: "
                                 "https://outlook.office365.com/.default)")
        elif (self.refresh_token is None) == (self.refresh_token_file is None):
            raise ValueError("flow: refresh_token needs exactly one of refresh_token and refresh_token_file")
        return self


class Account(Strict):
    """An Internet Mail Account: address, login name and password (or OAuth2), POP3 server, what to collect."""

    address: EmailAddress
    username: str
    password: SecretStr | None = None
    oauth2: OAuth2Settings | None = Field(None, description="log in with XOAUTH2 and tokens fetched here")
    pop3: Pop3Settings | None = None
    collect: CollectSettings | None = None

    @model_validator(mode="after")
    def _password_or_oauth2(self) -> Account:
        if self.password is None and self.oauth2 is None:
            raise ValueError(f"account {self.address} needs password or oauth2")
        if self.password is not None and self.oauth2 is not None:
            raise ValueError(f"account {self.address}: give password or oauth2, not both")
        return self

    @model_validator(mode="after")
    def _collect_needs_pop3(self) -> Account:
        if self.collect is not None and self.pop3 is None:
            raise ValueError("collect needs pop3: {server: ...} to know where the mailbox is")
        if self.collect is not None and self.pop3 is not None:
            pop = self.pop3
            if pop.tls == "none" and not pop.apop and not pop.allow_plaintext_auth:
                raise ValueError("collect with pop3.tls: none would send the password (or token) in clear; use "
                                 "tls: starttls or implicit, apop: true, or set pop3.allow_plaintext_auth: true")
        return self


class LogSettings(Strict):
    """Logging of the gateway process (standard error): ``level``, and ``format`` ``text`` or ``json``.

    ``text`` is one line per record with ``key=value`` fields (id, from, to, relay, delay, dsn,
    status, ...); ``json`` is one JSON object per line for log shippers (see ``core/logs.py``).
    """

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


def chain_entries(value: Any) -> Any:
    """``chain:`` items as one-key mappings (a bare plugin name gets no options); ValueError for other shapes."""
    if not isinstance(value, list):
        return value
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append({item: None})
        elif isinstance(item, dict) and len(item) == 1:
            out.append(item)
        else:
            import yaml

            written = yaml.safe_dump(item, default_flow_style=True, width=10**6).strip()
            raise ValueError(f"each chain entry is one plugin name, optionally with its options; chain[{i}] is "
                             f"{written[:120]}")
    return out


PluginEntry = dict[str, dict[str, Any] | None]


def worker_count(value: int | str) -> int:
    """The number of processes ``workers: value`` means: ``auto`` is the cores this process may run on.

    Called by ``pipeline serve`` (the ``workers`` key or its ``--workers`` option); ValueError for
    anything but ``auto`` or a whole number from 1.
    """
    import os

    value = _workers_value(value)
    if value == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            return max(1, os.cpu_count() or 1)
    return int(value)


def _workers_value(value: Any) -> int | str:
    """``auto`` or a whole number from 1 (also written as text, e.g. from ``${WORKERS}``); ValueError otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        value = int(text) if text.isdigit() else value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"expected auto or a number of processes from 1, got {value!r}")


Workers = Annotated[int | Literal["auto"], BeforeValidator(_workers_value)]
"""``workers:``: how many processes ``pipeline serve`` runs, ``auto`` (one per core) or a number."""


class Settings(Strict):
    """The whole configuration file (top-level keys)."""

    hostname: str = Field(default_factory=socket.getfqdn)
    state_dir: Path = Field(default_factory=default_state_dir)
    listen: list[ListenSpec] = Field(default_factory=lambda: [ListenSpec(address="127.0.0.1:2525")])
    relay: RelaySettings = Field(default_factory=RelaySettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    queue: PluginEntry = Field(default_factory=lambda: {"sqlite": {}})
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    workers: Workers = Field("auto", description="processes that serve (each accepts and delivers mail): "
                             "auto = one per core, or a number; docs/workers.md")
    pin_workers: bool = Field(True, description="with 2 or more workers and at least as many cores, each "
                              "worker on a core of its own (its threads then wake each other on one CPU); "
                              "docs/workers.md")
    accounts: list[Account] = Field(default_factory=list)
    chain: list[PluginEntry] = Field(default_factory=list)
    log: LogSettings = Field(default_factory=LogSettings)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or value.startswith("."):
            raise ValueError(f"expected a host name such as gateway.example.org, got {value!r}")
        return value

    @field_validator("queue")
    @classmethod
    def _one_queue(cls, value: PluginEntry) -> PluginEntry:
        if len(value) != 1:
            raise ValueError("expected exactly one queue backend, e.g. {sqlite: {path: queue.sqlite3}}")
        return value

    @field_validator("chain", mode="before")
    @classmethod
    def _chain_entries(cls, value: Any) -> Any:
        return chain_entries(value)

    @field_validator("accounts")
    @classmethod
    def _unique_collectors(cls, value: list[Account]) -> list[Account]:
        seen = [a.address.lower() for a in value if a.collect is not None]
        for dup in sorted({a for a in seen if seen.count(a) > 1}):
            raise ValueError(f"account {dup} collects more than once: give each mailbox one entry")
        return value

    def chain_names(self) -> list[str]:
        """The chain entries' names in order: ``name:`` where an entry gives one, else its plugin's name."""
        out = []
        for entry in self.chain:
            (plugin, options), = entry.items()
            given = options.get("name") if isinstance(options, dict) else None
            out.append(given if isinstance(given, str) else plugin)
        return out

    def account_for(self, address: str) -> Account | None:
        """The Internet Mail Account whose address is ``address`` (case-insensitive)."""
        wanted = address.lower()
        return next((a for a in self.accounts if a.address.lower() == wanted), None)
