"""The envelope addresses a session sends: MAIL and RCPT, their addresses quoted once per
address, reach a real server as aiosmtplib's own ``mail`` and ``rcpt`` put them, and an address
that cannot go on a command line is refused as it was (never sent)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP

from gateway.outbound.smtpclient import Route, Session

PAYLOAD = b"Subject: x\r\n\r\nx\r\n"
ADDRESSES = [
    "sirene@no.example",
    "Sirene.Desk+g@Sub.No-Example.org",
    '"quoted local"@no.example',
    "Name <sirene@no.example>",
    "  sirene@no.example  ",
    "a@[1.2.3.4]",
]


class Recorder:
    """Records the MAIL and RCPT arguments as the server parsed them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, tuple[str, ...]]] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.seen.append(("MAIL", address, tuple(options)))
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.seen.append(("RCPT", address, tuple(options)))
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 queued"


async def serve(recorder: Recorder) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(recorder, hostname="mx.test"), host="127.0.0.1", port=0
    )
    return server, server.sockets[0].getsockname()[1]


async def through_session(address: str) -> tuple[list[str], list[tuple[str, str, tuple[str, ...]]]]:
    """Two messages from and to ``address`` over one Session: their verdicts, what the server
    saw (the second from the kept quoting)."""
    recorder = Recorder()
    server, port = await serve(recorder)
    route = Route("127.0.0.1", port, False, ssl.create_default_context())
    session = await Session.open(route, "gw.test", 10)
    verdicts: list[str] = []
    for _ in range(2):
        attempt, usable, _ = await session.send(address, address, PAYLOAD)
        verdicts.append(attempt.verdict)
        if not usable:
            break
    session.close()
    server.close()
    return verdicts, recorder.seen


async def through_aiosmtplib(
    address: str,
) -> tuple[list[str], list[tuple[str, str, tuple[str, ...]]]]:
    """The same with aiosmtplib's own mail, rcpt and data."""
    recorder = Recorder()
    server, port = await serve(recorder)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
    await client.connect()
    await client.ehlo()
    verdicts: list[str] = []
    for _ in range(2):
        try:
            await client.mail(address, options=[f"SIZE={len(PAYLOAD)}"])
            await client.rcpt(address)
            await client.data(PAYLOAD)
        except ValueError:
            verdicts.append("refused")
            break
        verdicts.append("sent")
    client.close()
    server.close()
    return verdicts, recorder.seen


UNFIT = ["a b@c.example", "\u00e9@b.example"]
TRICKY = ["a@b.example> SIZE=1", "<a@b.example>\r\nRSET", "a@b.example (comment)"]


@pytest.mark.parametrize("address", ADDRESSES + TRICKY + UNFIT)
async def test_addresses_reach_the_server_as_aiosmtplib_sends_them(address: str) -> None:
    ours, theirs = await through_session(address), await through_aiosmtplib(address)
    assert ours == theirs
    if address in UNFIT:
        assert ours == (["refused"], [])
    else:
        assert ours[0] == ["sent", "sent"] and len(ours[1]) == 4
