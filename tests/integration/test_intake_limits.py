"""Hostile structure and hostile sessions against a running gateway: refused, audited, nothing kept.

Messages whose MIME nests a thousand levels deep, holds a hundred thousand parts, or decrypts to
far more than any form (a text node of 100 MB compressed into a small message) are refused with
550 5.6.0 or 552 5.3.4 and an audit line naming the partner and the raw message's digest. A
client holding every session it can from one address, or strangers from many addresses, cannot
keep a partner's message out; NOOP, RSET, HELP and VRFY do not keep a session alive.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import gpgkit
import pytest
from integration.inboundkit import (
    CHECK_KINDS,
    FORM,
    World,
    assert_nothing_stored,
    gateway_fingerprint,
    message,
    running_gateway,
    send,
    settle,
)
from mimekit import many_parts, nested_multiparts

from gateway.service.server import Gateway
from gateway.store.audit import AuditEntry

SENDER = "sirene@no.example"
US = "sirene@ro.example"
NO_ADDRESS_LINE = 'address = "sirene@no.example"\n'
PARTNER_ADDRESS = "127.0.0.2"  # loopback has all of 127/8: a partner's own address


def sealed(world: World, entity: bytes, *extra: str) -> bytes:
    """``entity`` signed by NO and encrypted to us, as PGP/MIME from NO's address."""
    ciphertext = gpgkit.sign_encrypt(
        world.no.home, [world.no.fingerprint], [gateway_fingerprint(world)], entity, *extra
    )
    return gpgkit.pgp_mime(ciphertext, SENDER, US, "SIRENE G")


def audited_refusals(gateway: Gateway) -> list[str]:
    """The reasons of the audit lines that record the refusal of a message from NO, each with
    the digest of the message as received."""
    entries = [entry for entry in gateway.audit.entries() if entry.kind == "rejected"]
    assert all(len(entry.digest) == 64 for entry in entries), entries
    return [entry.reason for entry in entries if entry.partner == "NO-SIRENE"]


@pytest.fixture
async def roomy(world: World, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway taking messages of up to 8 MiB (the world's default is 256 KiB)."""
    config = world.config_path.read_text()
    world_config = world.config_path
    try:
        world.config_path.write_text(
            config.replace("max_message_bytes = 262144\n", "max_message_bytes = 8388608\n")
        )
        async with running_gateway(world, tmp_path) as gateway:
            world.config_path.write_text(config)
            yield gateway
    finally:
        world_config.write_text(config)


# ---------------------------------------------------------------------- structure


async def test_a_thousand_nested_multiparts_outside_are_refused_550_560(
    world: World, gateway: Gateway
) -> None:
    raw = b"From: sirene@no.example\r\nTo: sirene@ro.example\r\n" + nested_multiparts(1000)
    code, text = await send(world, gateway, raw)
    assert (code, text.split()[0]) == (550, "5.6.0"), text
    assert "nesting deeper than 8" in text
    assert audited_refusals(gateway) == ["5.6.0 MimeLimitExceeded"]
    assert_nothing_stored(gateway)


async def test_a_thousand_nested_multiparts_inside_the_signed_content_are_refused(
    world: World, gateway: Gateway
) -> None:
    raw = sealed(world, nested_multiparts(1000))
    code, text = await send(world, gateway, raw)
    assert (code, text.split()[0]) == (550, "5.6.0"), text
    assert audited_refusals(gateway) == ["5.6.0 MimeLimitExceeded"]
    assert_nothing_stored(gateway)


async def test_many_parts_inside_the_signed_content_are_refused(
    world: World, gateway: Gateway
) -> None:
    raw = sealed(world, many_parts(10_000))
    assert len(raw) < 262144  # compressed: it fits the size limit, only its structure is wrong
    code, text = await send(world, gateway, raw)
    assert (code, text.split()[0]) == (550, "5.6.0"), text
    assert "more than 64 MIME parts" in text
    assert audited_refusals(gateway) == ["5.6.0 MimeLimitExceeded"]
    assert_nothing_stored(gateway)


async def test_a_header_flood_and_a_long_boundary_are_refused(
    world: World, gateway: Gateway
) -> None:
    flood = b"".join(b"X-Filler-%d: x\r\n" % n for n in range(1000))
    raws = [
        flood + b"From: sirene@no.example\r\n\r\nbody\r\n",
        sealed(world, b"Content-Type: multipart/mixed; boundary=" + b"b" * 71 + b"\r\n\r\nx\r\n"),
    ]
    for count, raw in enumerate(raws, start=1):
        code, text = await send(world, gateway, raw)
        assert (code, text.split()[0]) == (550, "5.6.0"), text
        assert audited_refusals(gateway) == ["5.6.0 MimeLimitExceeded"] * count
    assert_nothing_stored(gateway)


async def test_a_100_mb_text_node_in_a_small_message_is_refused_552(
    world: World, roomy: Gateway
) -> None:
    huge = FORM.replace(b"</ActionTaken>", b"A" * (100 << 20) + b"</ActionTaken>", 1)
    assert huge != FORM
    raw = sealed(world, gpgkit.entity(huge), "--compress-level", "9")
    assert len(raw) < 1 << 20
    started = time.monotonic()
    code, text = await send(world, roomy, raw)
    assert (code, text.split()[0]) == (552, "5.3.4"), text
    assert "the decrypted content" in text
    assert time.monotonic() - started < 30  # gpg is stopped at the cap, not run to the end
    assert audited_refusals(roomy) == ["5.3.4 DecryptedTooBig"]
    assert_nothing_stored(roomy)


async def test_a_form_over_the_xml_limit_but_under_the_plaintext_cap_is_refused_550(
    world: World, roomy: Gateway
) -> None:
    text_node = base64.b64encode(os.urandom(3 << 19))  # 2 MiB of text that compresses little
    big = FORM.replace(b"</ActionTaken>", text_node + b"</ActionTaken>", 1)
    raw = sealed(world, gpgkit.entity(big))
    code, text = await send(world, roomy, raw)
    assert (code, text.split()[0]) == (550, "5.6.0"), text
    assert "larger than" in text or "over" in text or "exceeds" in text, text
    assert audited_refusals(roomy) == ["5.6.0 InvalidForm"]
    assert_nothing_stored(roomy)


async def test_refusals_at_mail_rcpt_and_data_size_are_audited(
    world: World, gateway: Gateway
) -> None:
    code, _ = await send(world, gateway, b"x", sender="stranger@elsewhere.example")
    assert code == 550
    code, _ = await send(world, gateway, b"x", recipient="victim@elsewhere.example")
    assert code == 550
    code, text = await send(world, gateway, (b"x" * 70 + b"\r\n") * 5000)
    assert (code, text.split()[0]) == (552, "5.3.4"), text

    # Refusals of commands are audited off the event loop: give the writer a moment. (The
    # scheduler's certificate checks at start audit their failures beside them.)
    def refusals() -> list[AuditEntry]:
        return [entry for entry in gateway.audit.entries() if entry.kind not in CHECK_KINDS]

    for _ in range(100):
        if len(refusals()) >= 3:
            break
        await asyncio.sleep(0.05)
    reasons = sorted(
        (" ".join(entry.reason.split()[:2]), entry.kind, entry.partner) for entry in refusals()
    )
    assert reasons == [
        ("5.3.4 MessageTooBig", "rejected", "NO-SIRENE"),
        ("5.7.1 RelayDenied", "rejected", "NO-SIRENE"),
        ("5.7.1 UnknownSender", "rejected", ""),
    ]
    assert_nothing_stored(gateway)


# ---------------------------------------------------------------------- sessions


@contextlib.asynccontextmanager
async def held_sessions(port: int, count: int, addresses: list[str]) -> AsyncIterator[list[bytes]]:
    """``count`` connections from each of ``addresses``, held open; yields their first replies."""
    writers: list[asyncio.StreamWriter] = []
    greetings: list[bytes] = []
    try:
        for address in addresses:
            for _ in range(count):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(address, 0)
                )
                writers.append(writer)
                greetings.append(await asyncio.wait_for(reader.readline(), 10))
        yield greetings
    finally:
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def test_300_sessions_held_from_one_address_do_not_keep_a_partner_out(
    world: World, gateway: Gateway
) -> None:
    async with held_sessions(gateway.port, 300, ["127.0.0.1"]) as greetings:
        welcomed = [line for line in greetings if line.startswith(b"220 ")]
        refused = [line for line in greetings if line.startswith(b"421 4.7.0 ")]
        assert len(welcomed) == 10, greetings[:12]  # max_sessions_per_address
        assert len(refused) == 290
        assert b"too many sessions from your address" in refused[0]
        code, text = await send(world, gateway, message(world), source_address=PARTNER_ADDRESS)
    assert code == 250, text
    await settle(gateway)
    lines = [entry for entry in gateway.audit.entries() if entry.kind == "session.refused"]
    assert len(lines) == 1  # one line a minute per address, however many refusals
    assert "too many sessions from your address 127.0.0.1" in lines[0].reason


async def test_strangers_from_many_addresses_never_take_the_partners_sessions(
    world: World, tmp_path: Path
) -> None:
    networks = f'networks = ["{PARTNER_ADDRESS}/32"]\n'
    original = world.config_path.read_text()
    world.config_path.write_text(
        original.replace(
            'address = "sirene@no.example"\n', 'address = "sirene@no.example"\n' + networks
        )
    )
    try:
        listen = {"max_sessions": 20, "reserved_for_partners": 5}
        async with running_gateway(world, tmp_path, listen) as gateway:
            world.config_path.write_text(original)
            strangers = [f"127.0.1.{n}" for n in range(1, 5)]
            async with held_sessions(gateway.port, 10, strangers) as greetings:
                assert sum(line.startswith(b"220 ") for line in greetings) == 15
                code, text = await send(
                    world, gateway, message(world), source_address=PARTNER_ADDRESS
                )
                assert code == 250, text
                # The partner's address is in its networks; its MAIL FROM from elsewhere is not.
            code, text = await send(world, gateway, message(world), source_address="127.0.0.3")
            assert (code, text.split()[0]) == (550, "5.7.1"), text
            assert "does not send from this address" in text
            await settle(gateway)
    finally:
        world.config_path.write_text(original)


async def test_noop_rset_help_vrfy_do_not_keep_a_session_alive(
    world: World, tmp_path: Path
) -> None:
    async with running_gateway(world, tmp_path, {"idle_timeout": "PT1S"}) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            assert (await reader.readline()).startswith(b"220 ")
            started = time.monotonic()
            closed_with = b""
            for command in [b"NOOP", b"RSET", b"HELP", b"VRFY x"] * 3:
                writer.write(command + b"\r\n")
                line = await asyncio.wait_for(reader.readline(), 5)
                if line.startswith(b"421"):
                    closed_with = line
                    break
                await asyncio.sleep(0.4)
            waited = time.monotonic() - started
        finally:
            writer.close()
    assert closed_with.startswith(b"421 4.4.2 idle too long"), closed_with
    assert waited < 3.0  # 1 s without progress, not 1 s after the last NOOP


async def test_commands_without_progress_are_counted(world: World, gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        assert (await reader.readline()).startswith(b"220 ")
        replies = []
        for _ in range(12):
            writer.write(b"NOOP\r\n")
            replies.append(await asyncio.wait_for(reader.readline(), 5))
            if replies[-1].startswith(b"421"):
                break
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
    finally:
        writer.close()
    assert [reply[:3] for reply in replies] == [b"250"] * 10 + [b"421"]
    assert b"too many commands without progress" in replies[-1]
