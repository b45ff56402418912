"""The queue database's DSN as it may be shown: without its password.

Every message that names the database (errors, logs, ``pipeline check``) uses ``shown``,
never the DSN as configured, which may carry a password (``postgresql://u:secret@host/db``
or ``password=secret``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def shown(dsn: str) -> str:
    """``dsn`` (a libpq URI or ``key=value`` string) without its password; the text for people.

    A DSN that does not parse is shown as ``(unparsable DSN)``: its text may hold a secret.
    """
    text = dsn.strip()
    if text.startswith(("postgresql://", "postgres://")):
        try:
            parts = urlsplit(text)
        except ValueError:
            return "(unparsable DSN)"
        userinfo, at, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostinfo}" if at else hostinfo
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    try:
        params = conninfo_to_dict(text)
    except Exception:  # noqa: BLE001 - whatever psycopg says about it, the text is not shown
        return "(unparsable DSN)"
    params.pop("password", None)
    return make_conninfo(**params) if params else "(default connection)"
