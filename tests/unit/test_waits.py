"""wait_event: set, timed out, and a cancellation that arrives as the event is set, which
asyncio.wait_for on Python 3.11 loses (the task then never stops)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.core.waits import to_the_end, wait_event


async def test_true_when_set_false_when_timed_out() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
    assert await wait_event(event, -1) is True  # set already: no time needed


async def test_wakes_as_soon_as_set() -> None:
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_event(event, 60))
    await asyncio.sleep(0)
    event.set()
    assert await asyncio.wait_for(waiting, 5) is True


async def test_a_cancellation_as_the_event_is_set_gets_through() -> None:
    async def service(event: asyncio.Event) -> None:
        while True:  # a loop like the courier's: wait for a wake-up, work, wait again
            await wait_event(event, 60)
            event.clear()

    event = asyncio.Event()
    task = asyncio.create_task(service(event))
    await asyncio.sleep(0)  # the task waits
    event.set()  # the event's waiter completes ...
    task.cancel()  # ... and the cancellation arrives in the same turn of the loop
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the cancellation was lost: the task goes on"
    assert task.cancelled()


async def test_a_cancellation_while_waiting_gets_through() -> None:
    task = asyncio.create_task(wait_event(asyncio.Event(), 60))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_to_the_end_lets_the_thread_finish_before_the_cancellation() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def work() -> str:
        started.set()
        release.wait(5)
        finished.append("done")
        return "done"

    task = asyncio.create_task(to_the_end(asyncio.to_thread(work)))
    while not started.is_set():
        await asyncio.sleep(0.001)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done(), "the cancelled task waits for its thread"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["done"]
    assert await to_the_end(asyncio.to_thread(lambda: 7)) == 7
