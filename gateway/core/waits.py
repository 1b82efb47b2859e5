"""Waiting for an asyncio.Event with a time limit, and for a thread's work, without ever losing a
cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set (True) or ``timeout`` seconds have passed (False).

    asyncio.wait_for on Python 3.11 returns the inner result when a cancellation arrives just as
    the event is set, and the cancellation is lost: a task told to stop in that instant goes on
    for ever (seen as a `gateway serve` whose stop never returned). asyncio.timeout counts its
    own cancellations apart from the caller's, so a stop always gets through."""
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def to_the_end(work: Awaitable[T]) -> T:
    """Await ``work`` (a thread's, say); when cancelled, still wait for it to end, then stop.

    A task cancelled while it awaits asyncio.to_thread stops at once, but its thread goes on: the
    records that thread writes would then outlive whoever cancelled it (and closed the ledger)."""
    running = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await running
        raise
