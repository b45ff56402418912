"""The gateway's process log (standard error): ``text`` lines with ``key=value`` fields, or ``json`` lines.

Set up once by ``pipeline serve`` from ``log:`` (``level``, ``format``). A record may carry
``event`` (the event kind, for gateway events) and ``fields`` (its data) as ``extra``: the
event emitter (``events.py``) and the intake's "accepted" line do. Fields get the names
Postfix administrators grep for, in a stable order first — ``id`` (queue ID), ``from``,
``to``, ``relay``, ``delay`` (seconds since arrival), ``dsn`` (enhanced status code),
``status`` (sent, deferred, bounced, dropped, expired) — then the others by name:

    2024-05-01 10:00:03,123 INFO mailpipe.events: message.delivered: 0A1B...: <bob@example.net> delivered via
    smarthost:smtp.isp.example:587: 250 2.0.0 ok id=0A1B... from=<alice@example.org> to=<bob@example.net>
    relay=smtp.isp.example[192.0.2.25] delay=1.52 dsn=2.0.0 status=sent duration=0.41 route=...

``json`` writes one object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``event``, ``id``, ``text`` and ``fields`` (the same names), and ``exception`` for a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
COMMON = ("id", "from", "to", "relay", "delay", "dsn", "status")
_RENAMED = {"message": "id", "sender": "from", "recipient": "to", "queued_for": "delay"}
_STATUS = {"message.delivered": "sent", "message.deferred": "deferred", "message.bounced": "bounced",
           "message.dropped": "dropped", "message.expired": "expired"}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's fields under their log names: the common ones first, in order, then the rest by name.

    The event kind is not among them: the text line starts with it, and JSON has it as ``event``.
    """
    data: dict[str, Any] = dict(getattr(record, "fields", None) or {})
    event = getattr(record, "event", None)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("remote", "remote_addr"):
            continue
        out[_RENAMED.get(key, key)] = value
    remote, addr = data.get("remote"), data.get("remote_addr")
    if remote or addr:
        out["relay"] = f"{remote or 'unknown'}" + (f"[{addr}]" if addr else "")
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = round(value, 2 if key == "delay" else 3)
    if event in _STATUS:
        out.setdefault("status", _STATUS[event])
    first = {k: out[k] for k in COMMON if out.get(k) is not None}
    rest = {k: out[k] for k in sorted(out) if k not in first and out[k] is not None}
    return {**first, **rest}


def _text_value(key: str, value: Any) -> str:
    if key in ("from", "to") and isinstance(value, str):
        return f"<{value}>"
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, default=str, separators=(",", ":"))
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in "\"=" for c in text) else text


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>`` and then the record's fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={_text_value(k, v)}" for k, v in fields(record).items())
        if not extra:
            return line
        head, sep, tail = line.partition("\n")  # a traceback stays below the line
        return f"{head} {extra}{sep}{tail}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (for log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        found = fields(record)
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None),
            "id": found.get("id"),
            "text": record.getMessage(),
            "fields": found,
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def setup(level: str = "info", format: str = "text", stream: TextIO | None = None) -> None:  # noqa: A002
    """Send every log record at ``level`` or above to ``stream`` (standard error) in ``format``.

    Called by ``pipeline serve`` with the ``log:`` settings; replaces earlier handlers of the root logger.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
