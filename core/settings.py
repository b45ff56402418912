"""The configuration models (pydantic): every top-level key and what it expects.

Plugin options are not here: each plugin validates its own (``Plugin.Options``),
see ``config.py`` for how the two are put together.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from .durations import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in config as ``30s``, ``15m``, ``4h``, ``2d`` (or a number of seconds)."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in config as ``10M``, ``512K`` (or a number of bytes)."""

TlsMode = Literal["none", "starttls", "implicit"]


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


class ListenSpec(Strict):
    """One intake listener. Written as ``"127.0.0.1:2525"`` or as a mapping."""

    address: str
    tls: TlsMode = "none"
    cert: Path | None = None
    key: Path | None = None
    require_auth: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"address": value} if isinstance(value, str) else value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_host_port(value)
        return value

    @model_validator(mode="after")
    def _tls_needs_cert(self) -> ListenSpec:
        if self.cert is not None and self.tls == "none":
            self.tls = "starttls"
        if self.tls != "none" and (self.cert is None or self.key is None):
            raise ValueError(f"tls: {self.tls} needs both cert and key")
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
            return [ipaddress.ip_network(str(v), strict=False) if isinstance(v, str) else v for v in value]
        return value


class IntakeSettings(Strict):
    """Limits of the SMTP intake."""

    max_message_size: Size = 50 * 1024 * 1024
    max_recipients: int = Field(1000, ge=1)
    max_connections: int = Field(200, ge=1)
    timeout: Duration = 300.0


class DeliverySettings(Strict):
    """The seed page's connection and advanced settings, plus scheduler limits."""

    send_immediately: bool = True
    schedule: list[str] = Field(default_factory=list)
    port: int = Field(25, ge=1, le=65535)
    timeout: Duration = 60.0
    concurrency: int = Field(20, ge=1)
    shutdown_grace: Duration = 30.0
    default_retry: Duration = 900.0

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: list[str]) -> list[str]:
        from croniter import croniter

        for expr in value:
            if not croniter.is_valid(expr):
                raise ValueError(f"expected a cron expression such as '0 */2 * * *', got {expr!r}")
        return value


class Pop3Settings(Strict):
    """The POP3 server of an Internet Mail Account (for POP-before-SMTP)."""

    server: str
    port: int | None = Field(None, ge=1, le=65535)
    tls: TlsMode = "implicit"
    ca_file: Path | None = None
    verify: bool = True
    apop: bool = False


class Account(Strict):
    """An Internet Mail Account: address, login name and password, POP3 server."""

    address: str
    username: str
    password: SecretStr
    pop3: Pop3Settings | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError(f"expected an email address, got {value!r}")
        return value


class LogSettings(Strict):
    """Logging of the gateway process."""

    level: Literal["debug", "info", "warning", "error"] = "info"


def default_state_dir() -> Path:
    """``$MAILPIPE_STATE_DIR``, else /var/lib/mailpipe for root, else ~/.local/state/mailpipe."""
    if env := os.environ.get("MAILPIPE_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/mailpipe")
    return Path.home() / ".local" / "state" / "mailpipe"


PluginEntry = dict[str, dict[str, Any] | None]


class Settings(Strict):
    """The whole configuration file (top-level keys)."""

    hostname: str = Field(default_factory=socket.getfqdn)
    state_dir: Path = Field(default_factory=default_state_dir)
    listen: list[ListenSpec] = Field(default_factory=lambda: [ListenSpec(address="127.0.0.1:2525")])
    relay: RelaySettings = Field(default_factory=RelaySettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    queue: PluginEntry = Field(default_factory=lambda: {"sqlite": {}})
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
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
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                out.append({item: None})
            elif isinstance(item, dict) and len(item) == 1:
                out.append(item)
            else:
                raise ValueError("each chain entry is one plugin name, optionally with its options")
        return out

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
