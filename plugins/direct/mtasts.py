"""MTA-STS (RFC 8461) texts: the ``_mta-sts`` TXT record, the policy file, and matching MX hosts to it.

Parsing only; fetching and caching are in ``stsfetch`` and ``stscache``, the choice of
policy per host in ``security``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

MAX_AGE_LIMIT = 31_557_600  # one year (RFC 8461 3.2)
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_MODES = ("enforce", "testing", "none")


class StsError(Exception):
    """A TXT record or policy that is not valid; ``result_type`` is the RFC 8460 word for it."""

    def __init__(self, text: str, result_type: str = "sts-policy-invalid") -> None:
        super().__init__(text)
        self.result_type = result_type


def txt_id(records: list[str]) -> str | None:
    """The policy ``id`` of the TXT strings at ``_mta-sts.DOMAIN``; None when none starts with ``v=STSv1``.

    Raises ``StsError`` for several STS records or one without a valid id (RFC 8461 3.1:
    then the domain is treated as having no policy record).
    """
    sts = [r for r in records if r.startswith("v=STSv1")]
    if not sts:
        return None
    if len(sts) > 1:
        raise StsError(f"{len(sts)} MTA-STS TXT records (exactly one allowed)")
    fields = dict(_pairs(sts[0], ";", "="))
    ident = fields.get("id", "")
    if not _ID.match(ident):
        raise StsError(f"MTA-STS TXT record without a valid id: {sts[0]!r}")
    return ident


@dataclass(frozen=True)
class StsPolicy:
    """One MTA-STS policy: mode, MX patterns, max_age, the TXT id it was fetched for and when."""

    id: str
    mode: str
    mx: tuple[str, ...]
    max_age: int
    fetched: float
    text: str

    @property
    def expires(self) -> float:
        return self.fetched + self.max_age

    def valid_at(self, now: float) -> bool:
        """Whether a cached copy may still be used at ``now``."""
        return now < self.expires

    def allows(self, host: str) -> bool:
        """Whether MX host ``host`` matches one of the policy's ``mx`` patterns (RFC 8461 4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def lines(self) -> list[str]:
        """The policy as RFC 8460 ``policy-string`` lines."""
        return [ln.strip() for ln in self.text.splitlines() if ln.strip()]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mx": list(self.mx)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StsPolicy:
        return cls(str(data["id"]), str(data["mode"]), tuple(data["mx"]), int(data["max_age"]),
                   float(data["fetched"]), str(data["text"]))


def parse_policy(text: str, ident: str, fetched: float) -> StsPolicy:
    """The policy file served at ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt``; raises ``StsError``."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise StsError(f"policy line without a colon: {line[:80]!r}")
        fields.setdefault(key.strip(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise StsError(f"policy version is {fields.get('version')}, not STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in _MODES:
        raise StsError(f"policy mode {mode!r} is not enforce, testing or none")
    age = (fields.get("max_age") or [""])[0]
    if not age.isdigit() or len(age) > 10:
        raise StsError(f"policy max_age {age!r} is not a number of seconds")
    mx = tuple(m.lower().rstrip(".") for m in fields.get("mx", []))
    if mode != "none" and not mx:
        raise StsError(f"policy in mode {mode} names no mx")
    return StsPolicy(ident, mode, mx, min(int(age), MAX_AGE_LIMIT), fetched, text)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: ``mx.example.com`` matches itself; ``*.example.com`` matches one more label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return pattern == host


def _pairs(text: str, sep: str, eq: str) -> list[tuple[str, str]]:
    out = []
    for part in text.split(sep):
        key, found, value = part.strip().partition(eq)
        if found:
            out.append((key.strip(), value.strip()))
    return out
