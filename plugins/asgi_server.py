"""Serving an ASGI app with uvicorn inside the gateway's event loop (console and metrics).

The socket is bound here, so a busy address is a clear ``ConfigError`` at
startup instead of uvicorn's ``sys.exit``; uvicorn's own signal handling is
switched off, the gateway owns SIGTERM, SIGINT and SIGHUP. A server on an
address can be handed from one plugin instance to its successor (a reload
that changed the plugin's options) without closing the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import uvicorn

from mailpipe.core.errors import ConfigError
from mailpipe.core.tasks import cancel_and_wait

log = logging.getLogger("mailpipe.plugins.asgi_server")
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the gateway decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AppServer:
    """One HTTP(S) listener serving whichever app is set in ``app``."""

    live: ClassVar[dict[tuple[str, int], AppServer]] = {}

    def __init__(self, host: str, port: int, app: ASGIApp, *, cert: Path | None = None,
                 key: Path | None = None) -> None:
        self.host, self.port, self.app = host, port, app
        self.cert, self.key = cert, key
        self.owner: object | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    @classmethod
    async def claim(cls, owner: object, host: str, port: int, app: ASGIApp, *, cert: Path | None = None,
                    key: Path | None = None) -> AppServer:
        """The server on ``host:port``: taken over from a predecessor, or started now."""
        current = cls.live.get((host, port))
        if current is not None and current.cert == cert and current.key == key:
            current.app, current.owner = app, owner
            return current
        if current is not None:
            await current.stop()
        server = cls(host, port, app, cert=cert, key=key)
        server.owner = owner
        await server.start()
        cls.live[(host, port)] = server
        return server

    async def release(self, owner: object) -> None:
        """Stop serving, unless another instance has taken the server over since."""
        if self.owner is owner:
            await self.stop()

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        config = uvicorn.Config(
            self._dispatch, interface="asgi3", lifespan="off", access_log=False, log_level="warning",
            proxy_headers=False, server_header=False, timeout_graceful_shutdown=3,
            ssl_certfile=str(self.cert) if self.cert else None, ssl_keyfile=str(self.key) if self.key else None,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"http-{self.port}")
        for _ in range(200):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if self._task.done():
            sock.close()
            raise ConfigError(f"cannot serve on {self.host}:{self.port}: {self._task.exception()!r}")
        # Each plugin logs its own address under its own logger (console, metrics): this is the detail.
        log.debug("serving http%s://%s:%d/", "s" if self.cert else "", self.host, self.port)

    async def stop(self) -> None:
        if self.live.get((self.host, self.port)) is self:
            del self.live[(self.host, self.port)]
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        except TimeoutError:
            await cancel_and_wait(self._task)
        self._server = self._task = None
