"""`gateway web`: the handlers' console, its own process on the gateway's ledger (no SMTP)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from gateway.access.setup import open_access
from gateway.core import config as configuration
from gateway.core import logsetup
from gateway.service.services import open_services
from gateway.web import serve
from gateway.web.app import build_app

EXIT_OK = 0


def register(commands: Any) -> None:
    web = commands.add_parser(
        "web",
        help="serve the handlers' console over HTTP(S), as configured in [web]",
        description="Serve the console (login, worklist, message view) at [web] host and port, "
        "over TLS with tls_cert and tls_key, or behind a reverse proxy (behind_proxy, "
        "trusted_proxies). Prints its URL, then runs until interrupted.",
    )
    web.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    web.set_defaults(run=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    os.umask(0o077)
    config = configuration.load_required(args.config)
    logsetup.configure(args.log_level, config.logging.format)
    with open_services(config) as services:
        access = open_access(config, services.ledger, services.clock)
        # What a page needs is built before the first request: the schemas, the inbound spool.
        _ = services.validator, services.inbound
        access.sessions.sweep()
        app = build_app(services, access)
        sock = serve.bind(config.web)
        print(f"gateway web: serving the console at {serve.url_of(sock, config.web)}", flush=True)
        # uvicorn shuts down gracefully on SIGTERM (systemd's stop), then raises the signal
        # again with the handler it found: this one ends the command with 0, services closed.
        signal.signal(signal.SIGTERM, _stopped)
        serve.serve(app, config.web, sock)
    return EXIT_OK


def _stopped(_signum: int, _frame: object) -> None:
    sys.exit(EXIT_OK)
