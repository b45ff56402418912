"""Options of ``chain: - clamav: {...}``, validated before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mailpipe.core.settings import Duration, HostPort, Strict

MAX_TIMEOUT = 50.0  # the intake gives every accept hook 60s; a scan must end (or give up) before that


class ClamavOptions(Strict):
    """``address: "127.0.0.1:3310"`` or ``socket: /run/clamav/clamd.ctl``; what to do when a virus is found
    (``action``) and when clamd cannot answer (``on_error``)."""

    address: HostPort | None = Field(None, description="clamd's TCP listener, host:port")
    socket: Path | None = Field(None, description="clamd's Unix socket (LocalSocket in clamd.conf)")
    timeout: Duration = Field(30.0, gt=0, description="the whole scan, connect included")
    action: Literal["reject", "quarantine"] = Field(
        "reject", description="reject: 554 5.7.0 at the end of DATA; quarantine: queue it held and flagged")
    on_error: Literal["tempfail", "accept"] = Field(
        "tempfail", description="clamd unreachable or too slow: 451 4.7.0, or accept with a header saying so")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value > MAX_TIMEOUT:
            raise ValueError(f"at most {MAX_TIMEOUT:g}s: the intake gives all accept steps together 60s")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> ClamavOptions:
        if (self.address is None) == (self.socket is None):
            raise ValueError('expected exactly one of address ("127.0.0.1:3310") or socket (/run/clamav/clamd.ctl)')
        return self
