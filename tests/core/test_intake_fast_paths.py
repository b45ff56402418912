"""The intake's quick byte checks give exactly the answers of the plain ones they replace.

``has_long_line`` (core/intake/data.py) looks for an LF in overlapping windows instead of
splitting the message into lines; ``has_bare_line_ends`` (core/intake/normalise.py) compares
the CR and LF octets with the CRLF pairs instead of removing the pairs. Both run on every
message (the second again before each delivery), so they are checked here against the plain
definitions on every short mixture and on random long lines around the limits.
"""

from __future__ import annotations

import itertools
import random

from mailpipe.core.intake.data import MAX_LINE, has_long_line
from mailpipe.core.intake.normalise import has_bare_line_ends


def plain_long_line(content: bytes) -> bool:
    return len(content) > MAX_LINE and max(map(len, content.split(b"\n"))) > MAX_LINE


def plain_bare(data: bytes) -> bool:
    rest = data.replace(b"\r\n", b"")
    return b"\r" in rest or b"\n" in rest


def test_long_lines_found_exactly_around_the_limit():
    rng = random.Random(11)
    lengths = [0, 1, 2, 499, 500, 501, 502, 998, 999, 1000, 1001, 1002, 1499, 1500, 1501, 2001, 2003, 5000]
    for _ in range(20_000):
        parts = [b"x" * rng.choice(lengths) for _ in range(rng.randint(1, 7))]
        content = rng.choice([b"\n", b"\r\n"]).join(parts) + rng.choice([b"", b"\r\n", b"\n"])
        assert has_long_line(content) == plain_long_line(content), [len(p) for p in parts]


def test_the_limit_itself():
    assert not has_long_line(b"a" * 999 + b"\r\n")  # 999 octets and the CR: 1000, allowed
    assert has_long_line(b"a" * 1000 + b"\r\n")
    assert has_long_line(b"line\r\n" * 300 + b"b" * 1001)  # at the very end, no LF after it
    assert not has_long_line((b"y" * 76 + b"\r\n") * 2000)


def test_bare_line_ends_found_exactly():
    alphabet = [b"a", b"\r\n", b"\r", b"\n", b"\r\r", b"\n\n", b"\n\r"]
    for n in range(6):
        for pieces in itertools.product(alphabet, repeat=n):
            data = b"".join(pieces)
            assert has_bare_line_ends(data) == plain_bare(data), data
