"""Helpers of the postgres queue tests: node configurations, sending mail, looking at the shared queue."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Callable
from typing import Any

from mailpipe.core.queue import Attempt, MessageSummary
from mailpipe.plugins.postgres_queue import PostgresQueue
from tests.core.helpers import make_message
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.sink import Received, RecordingSink


def node_config(name: str, dsn: str, sink: RecordingSink | tuple[str, int], *, lease: str = "3s",
                **delivery: Any) -> dict[str, Any]:
    """One node of a cluster: its own hostname, the shared queue at ``dsn``, a smarthost chain to ``sink``."""
    host, port = (sink.host, sink.port) if isinstance(sink, RecordingSink) else sink
    return {
        "hostname": f"{name}.test",
        "queue": {"postgres": {"dsn": dsn, "lease": lease, "pool_size": 4, "timeout": "3s"}},
        "delivery": {"shutdown_grace": "5s", **delivery},
        "chain": [{"smarthost": {"server": host, "port": port, "tls": "none"}},
                  {"retry": {"every": "15m", "expire_after": "2d"}}],
    }


def try_send(node: MailpipeProcess, subject: str, rcpts: tuple[str, ...] = ("bob@example.net",),
             timeout: float = 30, body: str = "Hello.\n") -> tuple[int, str]:
    """Hand one message to ``node``; the reply to the final dot (code, text)."""
    host, port = node.address
    with smtplib.SMTP(host, port, timeout=timeout) as client:
        client.ehlo("client.test")
        client.mail("alice@example.org")
        for r in rcpts:
            client.rcpt(r)
        code, text = client.data(make_message(subject, body))
    return code, text.decode()


def send(node: MailpipeProcess, subject: str, rcpts: tuple[str, ...] = ("bob@example.net",),
         body: str = "Hello.\n") -> str:
    """Hand one message to ``node``, which must answer 250; its queue id."""
    code, text = try_send(node, subject, rcpts, body=body)
    assert code == 250, f"{code} {text}"
    return text.rsplit(" ", 1)[-1]


def send_until_accepted(node: MailpipeProcess, subject: str, refusals: list[str], tries: int = 200) -> None:
    """Like a real MTA: try again after a 4xx (or a dropped connection) until the message is accepted."""
    for _ in range(tries):
        try:
            code, text = try_send(node, subject)
        except (smtplib.SMTPException, OSError) as exc:
            refusals.append(f"{subject}: {exc}")
            continue
        if code == 250:
            return
        assert 400 <= code < 500, f"{subject}: {code} {text}"
        refusals.append(f"{subject}: {code} {text}")
    raise AssertionError(f"{subject} never accepted: {refusals[-3:]}")


def in_threads(jobs: list[Callable[[], None]]) -> None:
    """Run ``jobs`` at once, each in a thread; re-raise the first failure."""
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]


def subjects(received: RecordingSink | list[Received]) -> list[str]:
    """The Subject of every message the sink received, in arrival order."""
    out = []
    for m in received.messages if isinstance(received, RecordingSink) else received:
        for line in m.data.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
                break
    return out


def queue_call(dsn: str, fn: Callable[[PostgresQueue], Any]) -> Any:
    """Open the shared queue from the test (as the CLI would), call ``await fn(queue)``, close it."""

    async def main() -> Any:
        queue = PostgresQueue(dsn, node="test", pool_size=2)
        await queue.open()
        try:
            return await fn(queue)
        finally:
            await queue.close()

    return asyncio.run(main())


def attempts(dsn: str, **filters: Any) -> list[Attempt]:
    """The message log of the whole cluster."""
    return queue_call(dsn, lambda q: q.attempts(limit=10_000, **filters))


def queued(dsn: str) -> list[MessageSummary]:
    """Messages still queued anywhere in the cluster."""
    return queue_call(dsn, lambda q: q.list())
