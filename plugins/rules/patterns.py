"""Regular expressions that cannot backtrack: RE2 (``google-re2``), linear in the text's length.

A rule's pattern is matched against text the sender chose (headers, addresses, file names),
so a backtracking engine could be made to run for hours by one message (``(a+)+$``). RE2
matches every pattern in time linear in the text; the price is that look-around and
back-references are not available: such a pattern is refused when the configuration is loaded,
with its key path. The syntax is otherwise Python's (``(?i)`` for any case, ``\\d``, ``\\b``...).
"""

from __future__ import annotations

from typing import Any

import re2
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors are raised (and reported with the key path), not printed
_OPTIONS.max_mem = 8 << 20  # a pattern whose program needs more is refused at load


class SafePattern:
    """A pattern compiled with RE2; equal to another with the same text (so a reload can tell it unchanged)."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self._regex = re2.compile(text, _OPTIONS)
        except re2.error as exc:
            detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            raise ValueError(f"not a usable regular expression: {detail} (RE2 syntax: no look-around "
                             "or back-references)") from None

    def search(self, text: str) -> bool:
        """Whether the pattern occurs anywhere in ``text``."""
        return self._regex.search(text) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SafePattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"SafePattern({self.text!r})"

    @classmethod
    def parse(cls, value: Any) -> SafePattern:
        """A pattern from configuration text (pydantic validator)."""
        if isinstance(value, SafePattern):
            return value
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a regular expression, got {value!r}")
        return cls(value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(lambda p: p.text))
