"""The chunked DATA reader: end-of-data only at CRLF.CRLF, wherever the chunks split."""

from __future__ import annotations

import asyncio

import pytest

from mailpipe.core.intake.data import read_data


def run(chunks: list[bytes], limit: int | None = None) -> tuple[object, bytes, int]:
    async def go() -> tuple[object, bytes, int]:
        progress: list[int] = []
        # Feed chunk by chunk: read() returns what is buffered, so give it one chunk at a time.
        reader2 = asyncio.StreamReader()

        async def feeder() -> None:
            for c in chunks:
                reader2.feed_data(c)
                await asyncio.sleep(0)
            reader2.feed_eof()

        task = asyncio.ensure_future(feeder())
        result = await read_data(reader2, size_limit=limit, on_progress=lambda: progress.append(1))
        await task
        rest = await reader2.read()
        return result, rest, len(progress)

    return asyncio.run(go())


def split_everywhere(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:]] for i in range(1, len(data))]


MESSAGE = b"Subject: x\r\n\r\n..leading dot\r\nbare\n.\nlf\r\n.\r\nQUIT\r\n"


@pytest.mark.parametrize("chunks", split_everywhere(MESSAGE))
def test_end_found_across_any_split(chunks):
    result, rest, _ = run(chunks)
    assert result.content == b"Subject: x\r\n\r\n.leading dot\r\nbare\n.\nlf\r\n"
    assert rest == b"QUIT\r\n"


def test_empty_message_and_empty_first_line():
    assert run([b".\r\nNOOP\r\n"])[0].content == b""
    assert run([b"\r\n.\r\n"])[0].content == b"\r\n"


def test_size_limit_discards_and_still_finds_the_end():
    big = b"x" * 70 + b"\r\n"
    chunks = [big * 1000, big * 1000 + b"\r\n.", b"\r\nRSET\r\n"]
    result, rest, progress = run(chunks, limit=10_000)
    assert result.content is None and result.error.startswith("552")
    assert rest == b"RSET\r\n" and progress >= 3  # the idle timer restarted as data flowed


def test_long_line_refused_and_client_gone():
    assert run([b"a" * 1000 + b"\r\n.\r\n"])[0].error.startswith("500")
    assert run([b"a" * 998 + b"\r\n.\r\n"])[0].content == b"a" * 998 + b"\r\n"
    assert run([b"no end in sight\r\n"])[0] is None
