"""The files a configuration names (CA bundles, certificates, keys), checked when it is loaded.

Each check returns what is wrong in plain words, naming the file, or None when the file can be
used; the configuration loader puts the key path in front. So a missing, unreadable or wrong
file is refused by ``pipeline check`` and ``serve`` alike, before anything starts, instead of
ending a running server with a traceback.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal

FileKind = Literal["ca", "cert", "key"]
_WHAT = {"ca": "CA certificates", "cert": "a certificate", "key": "a private key"}
_PEM = {"ca": re.compile(rb"-----BEGIN (TRUSTED )?CERTIFICATE-----"),
        "cert": re.compile(rb"-----BEGIN CERTIFICATE-----"),
        "key": re.compile(rb"-----BEGIN ([A-Z0-9]+ )?PRIVATE KEY-----")}


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc).replace("_", " ").lower()


def file_problem(path: Path, kind: FileKind) -> str | None:
    """What is wrong with ``path`` as a PEM file of ``kind`` (``ca``, ``cert``, ``key``), or None.

    Called by the configuration models' validators (``settings.CaFile`` and friends).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"{path}: no such file"
    except IsADirectoryError:
        return f"{path}: is a folder, not a file"
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    if not _PEM[kind].search(data):
        return f"{path}: not a PEM file with {_WHAT[kind]} (no '-----BEGIN ...-----' line for one)"
    if kind == "ca":
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(path))
        except ssl.SSLError as exc:
            return f"{path}: CA certificates that cannot be loaded ({_ssl_reason(exc)})"
    return None


def pair_problem(cert: Path, key: Path) -> str | None:
    """What is wrong with ``cert`` and ``key`` as one TLS server identity (they must match), or None."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        return f"certificate {cert} and key {key} cannot be used together ({_ssl_reason(exc)})"
    except OSError as exc:
        return f"certificate {cert} and key {key} cannot be read ({exc.strerror or exc})"
    return None
