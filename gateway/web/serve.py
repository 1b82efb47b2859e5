"""The console served by uvicorn on a socket bound beforehand (so port 0 works and the URL is
known), with TLS when configured; uvicorn's access log is off (it would log client addresses).
Served alone (`gateway web`) or inside another program's event loop (`gateway demo --console`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from gateway.core.config import WebSettings


def bind(settings: WebSettings) -> socket.socket:
    """The listening socket at the configured address (``port = 0``: one the system picks)."""
    host = settings.host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, settings.port), family=family, backlog=128)


def url_of(sock: socket.socket, settings: WebSettings) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if settings.tls else 'http'}://{shown}:{port}/"


def serve(app: Starlette, settings: WebSettings, sock: socket.socket) -> None:
    """Serve until SIGINT or SIGTERM."""
    uvicorn.Server(_config(app, settings)).run(sockets=[sock])


class Embedded(uvicorn.Server):
    """The console served as a task of a running event loop, whose program handles the signals
    and ends it with ``stop``."""

    def __init__(self, app: Starlette, settings: WebSettings) -> None:
        super().__init__(_config(app, settings))
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the program's own handlers stay

    async def begin(self, sock: socket.socket) -> None:
        """Serve on ``sock`` from now on; returns once it accepts connections."""
        self._task = asyncio.create_task(self.serve(sockets=[sock]))
        while not self.started:
            if self._task.done():
                self._task.result()  # its failure, raised here
                raise RuntimeError("the console stopped before it started")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.should_exit = True
        if self._task is not None:
            await self._task


def _config(app: Starlette, settings: WebSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        proxy_headers=False,  # gateway.web.client believes only the configured proxies
        server_header=False,
        access_log=False,
        log_config=None,
        lifespan="off",
    )
