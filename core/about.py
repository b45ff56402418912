"""The installed mailpipe's version (``pipeline --version``, the startup log line)."""

from __future__ import annotations

from functools import cache

from .distinfo import version as installed_version


@cache
def version() -> str:
    """The version of the installed ``mailpipe`` distribution (``unknown`` when run from a bare tree)."""
    quick = installed_version("mailpipe")
    if quick is not None:
        return quick
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("mailpipe")
    except PackageNotFoundError:
        return "unknown"
