"""The console served by uvicorn on a socket bound beforehand (so port 0 works and the URL is
known), with TLS when configured; uvicorn's access log is off (it would log client addresses)."""

from __future__ import annotations

import socket

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
    config = uvicorn.Config(
        app,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        proxy_headers=False,  # gateway.web.client believes only the configured proxies
        server_header=False,
        access_log=False,
        log_config=None,
        lifespan="off",
    )
    uvicorn.Server(config).run(sockets=[sock])
