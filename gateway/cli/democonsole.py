"""`gateway demo --console`: after the story, each bureau's console served from the demo's
process beside its running gateway, with a demo user per role, until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.service.server import Gateway
from gateway.web import serve
from gateway.web.app import build_app

Say = Callable[[str], None]
LOGINS = "logins.txt"  # in the demo's folder, 0600: the demo users' names and passwords


@dataclass(frozen=True)
class Login:
    name: str
    role: Role
    desks: frozenset[str]
    password: str


def demo_logins(gateway: Gateway) -> list[Login]:
    """A handler for each desk but the duty desk, and one user of every other role."""
    duty = gateway.config.deadlines.duty_desk
    made = [
        Login(f"handler.{desk.name}", Role.HANDLER, frozenset({desk.name}), _password())
        for desk in gateway.config.desks
        if desk.name != duty
    ]
    for role, name in (
        (Role.SUPERVISOR, "supervisor"),
        (Role.DUTY_OFFICER, "duty.officer"),
        (Role.OPERATOR, "operator"),
        (Role.AUDITOR, "auditor"),
    ):
        made.append(Login(name, role, frozenset(), _password()))
    return made


def _password() -> str:
    return secrets.token_urlsafe(12)  # 16 characters: over the policy's 12


async def serve_consoles(gateways: dict[str, Gateway], folder: Path, say: Say) -> None:
    """Serve every bureau's console until SIGINT or SIGTERM; the gateways run on meanwhile."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    written: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        say("")
        say("The consoles (the gateways go on running; Ctrl-C stops them all):")
        for name, gateway in gateways.items():
            access = open_access(gateway.config, gateway.ledger, gateway.services.clock)
            logins = demo_logins(gateway)
            for login in logins:
                await asyncio.to_thread(
                    access.accounts.add,
                    login.name,
                    frozenset({login.role}),
                    login.desks,
                    login.password,
                )
            server = serve.Embedded(build_app(gateway.services, access), gateway.config.web)
            sock = serve.bind(gateway.config.web)
            await server.begin(sock)
            stack.push_async_callback(server.stop)
            url = serve.url_of(sock, gateway.config.web)
            codes = ", ".join(gateway.config.identity.bureaux.values())
            say(f"  {name.upper()} ({codes}): {url}")
            for login in logins:
                line = f"{login.name:<18} {login.password}   {login.role.value}"
                say(f"    {line}")
                written.append(f"{name.upper()} {url} {line}")
        _write_logins(folder / LOGINS, written)
        say(f"The logins are also in {folder / LOGINS}. Consoles ready.")
        await stop.wait()
        say("Stopping.")
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)


def _write_logins(path: Path, lines: list[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
