"""The chain walker: YAML order, the async convention, time bounds, failures named by plugin."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from mailpipe.core.chain import Chain
from mailpipe.core.errors import PluginFailure, SMTPError
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Message, Recipient, Route
from mailpipe.core.plugin import NoOptions, Plugin, PluginContext
from mailpipe.core.settings import Settings


class Router(Plugin):
    """Routes recipients of one domain; answers asynchronously."""

    def __init__(self, name: str, domain: str | None, *, fail: str | None = None) -> None:
        super().__init__(NoOptions(), PluginContext(Settings(), base_dir=__import__("pathlib").Path(".")),
                         instance_name=name)
        self.domain = domain
        self.fail = fail
        self.calls: list[list[str]] = []

    @hookimpl
    async def route(self, message: Message, recipients: list[str]) -> list[Route] | None:
        self.calls.append(list(recipients))
        if self.fail == "raise":
            raise RuntimeError("database exploded")
        if self.fail == "hang":
            await asyncio.sleep(3600)
        mine = [r for r in recipients if self.domain and r.endswith("@" + self.domain)]
        return [Route(self.instance_name, "test", self.domain or "", mine)] if mine else None

    @hookimpl
    def on_failure(self) -> None:  # a sync implementation taking no arguments at all
        return None


def message(*rcpts: str) -> Message:
    return Message("ID1", "a@example.org", [Recipient(r) for r in rcpts], 0.0)


def test_yaml_order_and_async_none_means_not_mine() -> None:
    """Hooks run in YAML order; an async hook returning None passes the call on."""
    first, second, third = Router("first", None), Router("second", "b.test"), Router("third", "c.test")
    chain = Chain([first, second, third])
    assert chain.order()["route"] == ["first", "second", "third"]
    assert chain.order()["on_failure"] == ["first", "second", "third"]
    result = asyncio.run(chain.first("route", message=message("x@b.test"), recipients=["x@b.test"]))
    assert first.calls == [["x@b.test"]] and second.calls == [["x@b.test"]] and third.calls == []
    assert result[0].plugin == "second"


def test_exception_is_a_temporary_failure_named_by_plugin(caplog: pytest.LogCaptureFixture) -> None:
    """A plugin that raises is a temporary failure (451) naming the plugin, hook and error."""
    chain = Chain([Router("broken", None, fail="raise"), Router("good", "b.test")])
    with caplog.at_level(logging.ERROR), pytest.raises(PluginFailure) as failure:
        asyncio.run(chain.first("route", message=message("x@b.test"), recipients=["x@b.test"]))
    assert failure.value.temporary and failure.value.reply.code == 451
    assert "plugin 'broken' failed in route: RuntimeError: database exploded" in str(failure.value)
    assert "plugin broken raised in route" in caplog.text


def test_time_bound() -> None:
    """A hook that never returns is cut at its time bound: a temporary failure naming plugin, hook and bound."""
    chain = Chain([Router("slow", None, fail="hang")], timeouts={"route": 1.0})
    started = time.monotonic()
    with pytest.raises(PluginFailure) as failure:
        asyncio.run(chain.first("route", message=message("x@b.test"), recipients=["x@b.test"]))
    assert 1.0 <= time.monotonic() - started < 5.0
    assert str(failure.value) == "451 4.3.0 plugin 'slow' failed in route: timed out after 1s"
    assert failure.value.temporary and (failure.value.reply.code, failure.value.reply.enhanced) == (451, "4.3.0")


def test_smtp_error_passes_through_unchanged() -> None:
    """An SMTPError raised by a plugin reaches the caller as it was raised."""
    class Refuser(Router):
        @hookimpl
        def accept(self) -> None:
            raise SMTPError(550, "5.7.1", "no thanks")

    chain = Chain([Refuser("refuser", None)])
    with pytest.raises(SMTPError) as refused:
        asyncio.run(chain.each("accept", message=message("x@b.test"), session=None))
    assert str(refused.value.reply) == "550 5.7.1 no thanks"
