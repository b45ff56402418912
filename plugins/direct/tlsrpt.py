"""TLS reporting (RFC 8460): session counts per policy domain and policy, and the daily JSON report.

``TlsCounters`` counts, per UTC day and recipient domain, the sessions of each policy
(``ReportPolicy``) that succeeded and those that failed, by failure (result type, MX
host, addresses). Counts are taken from memory by ``take`` and merged into the stored
counts (``merge``) by the reporter. ``report_json`` makes the RFC 8460 report of one
domain and day.
"""

from __future__ import annotations

import calendar
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .security import ReportPolicy


def day_of(t: float) -> str:
    """The UTC date of Unix time ``t`` (``2027-01-15``)."""
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def day_bounds(day: str) -> tuple[float, float]:
    """Start and end (Unix time) of the UTC day ``day``."""
    start = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
    return float(start), float(start + 86400)


@dataclass
class DomainDay:
    """The counts of one recipient domain on one day: per policy (its JSON), successes, failures, details."""

    policies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def entry(self, policy: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps(policy, sort_keys=True)
        return self.policies.setdefault(key, {"policy": policy, "success": 0, "failure": 0, "details": {}})

    def to_json(self) -> str:
        return json.dumps({"policies": list(self.policies.values())}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> DomainDay:
        out = cls()
        if text:
            for p in json.loads(text).get("policies", []):
                out.policies[json.dumps(p["policy"], sort_keys=True)] = p
        return out

    def merge(self, other: DomainDay) -> DomainDay:
        """Add ``other``'s counts to these."""
        for p in other.policies.values():
            mine = self.entry(p["policy"])
            mine["success"] += p["success"]
            mine["failure"] += p["failure"]
            for key, detail in p["details"].items():
                have = mine["details"].setdefault(key, {**detail, "failed-session-count": 0})
                have["failed-session-count"] += detail["failed-session-count"]
        return self

    @property
    def sessions(self) -> int:
        return sum(p["success"] + p["failure"] for p in self.policies.values())


class TlsCounters:
    """Session counts not yet stored, by (day, domain); filled by each attempt."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], DomainDay] = {}

    def _entry(self, when: float, domain: str, policy: ReportPolicy) -> dict[str, Any]:
        day = self.pending.setdefault((day_of(when), domain), DomainDay())
        return day.entry(policy.to_json(domain))

    def success(self, when: float, domain: str, policy: ReportPolicy) -> None:
        """One session under ``policy`` that met it."""
        self._entry(when, domain, policy)["success"] += 1

    def failure(self, when: float, domain: str, policy: ReportPolicy, result_type: str, *, mx_host: str = "",
                receiving_ip: str | None = None, sending_ip: str | None = None, reason: str = "") -> None:
        """One session (or one host not tried) that failed ``policy``, as RFC 8460 ``result-type``."""
        entry = self._entry(when, domain, policy)
        entry["failure"] += 1
        detail: dict[str, Any] = {"result-type": result_type}
        if mx_host:
            detail["receiving-mx-hostname"] = mx_host
        if receiving_ip:
            detail["receiving-ip"] = receiving_ip
        if sending_ip:
            detail["sending-mta-ip"] = sending_ip
        if reason:
            detail["additional-information"] = reason[:300]
        key = json.dumps({k: v for k, v in detail.items() if k != "additional-information"}, sort_keys=True)
        have = entry["details"].setdefault(key, {**detail, "failed-session-count": 0})
        have["failed-session-count"] += 1

    def take(self) -> dict[tuple[str, str], DomainDay]:
        """The counts gathered since the last ``take`` (and forget them here)."""
        pending, self.pending = self.pending, {}
        return pending


def report_json(day: str, domain: str, counts: DomainDay, *, organization: str, contact: str,
                report_id: str) -> dict[str, Any]:
    """The RFC 8460 aggregate report of ``domain`` for the UTC day ``day``."""
    start, end = day_bounds(day)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    policies = []
    for p in counts.policies.values():
        item: dict[str, Any] = {
            "policy": p["policy"],
            "summary": {"total-successful-session-count": p["success"],
                        "total-failure-session-count": p["failure"]},
        }
        if p["details"]:
            item["failure-details"] = [p["details"][k] for k in sorted(p["details"])]
        policies.append(item)
    return {
        "organization-name": organization,
        "date-range": {"start-datetime": time.strftime(fmt, time.gmtime(start)),
                       "end-datetime": time.strftime(fmt, time.gmtime(end - 1))},
        "contact-info": contact,
        "report-id": report_id,
        "policies": policies,
    }
