"""The hand-off's hold: it waits while sessions are busy, never longer than HANDOFF_MAX_WAIT.

The hold reads the wall clock (spool mtimes, time.time) and time.monotonic (Limits.busy), not
the injected Clock: the tests set the instants relative to now instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.inbound.handoff import Handoff, Progress
from gateway.inbound.smtp_server import Limits
from gateway.service import server
from gateway.service.server import HANDOFF_MAX_WAIT, HANDOFF_QUIET, Gateway
from gateway.store.spool import Spool, SpoolItem


def limits(*, in_data: int = 0, data_ended_ago: float = 3600.0) -> Limits:
    made = Limits(max_sessions=10, idle_timeout=60.0, session_timeout=600.0)
    made.in_data = in_data
    made.last_data_end = time.monotonic() - data_ended_ago
    return made


def gateway_with(session_limits: Limits) -> Gateway:
    """A Gateway with only what the hold reads: building a whole one needs keys and a ledger."""
    gateway = Gateway.__new__(Gateway)
    gateway.limits = session_limits
    return gateway


# The decision


@pytest.mark.parametrize(
    ("in_data", "ended_ago", "waited", "held"),
    [
        (1, 3600.0, 0.0, True),  # a session is inside DATA
        (3, 3600.0, HANDOFF_MAX_WAIT - 0.01, True),
        (0, HANDOFF_QUIET / 5, 0.0, True),  # one left DATA just now: the next is on its way
        (0, HANDOFF_QUIET * 4, 0.0, False),  # quiet for long enough
        (0, 3600.0, 0.0, False),  # idle
        (0, 3600.0, 10 * HANDOFF_MAX_WAIT, False),
        (1, 3600.0, HANDOFF_MAX_WAIT, False),  # busy, but the item waited long enough
        (1, 0.0, HANDOFF_MAX_WAIT + 0.5, False),
        (0, 0.0, 60.0, False),
    ],
)
def test_hold_decision(in_data: int, ended_ago: float, waited: float, held: bool) -> None:
    gateway = gateway_with(limits(in_data=in_data, data_ended_ago=ended_ago))
    assert gateway._hold(waited) is held


def test_busy_ends_quiet_seconds_after_the_last_data() -> None:
    session_limits = limits(data_ended_ago=0.0)
    assert session_limits.busy(HANDOFF_QUIET)
    time.sleep(HANDOFF_QUIET * 1.5)
    assert not session_limits.busy(HANDOFF_QUIET)


def test_a_fresh_limits_is_not_busy() -> None:
    assert not Limits(max_sessions=1, idle_timeout=1.0, session_timeout=1.0).busy(HANDOFF_QUIET)


# Handoff.run(hold): oldest first, held items stay in new/


class Recorder:
    def __init__(self) -> None:
        self.handled: list[str] = []

    def __call__(self, items: list[SpoolItem]) -> list[SpoolItem]:
        self.handled += [item.key for item in items]
        return items


def spooled(spool: Spool, key: str, age: float) -> None:
    item = spool.put(key, b"x", {"raw_length": 1})
    at = time.time() - age
    os.utime(item.path, (at, at))


def handoff_on(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> tuple[Handoff, Recorder]:
    handoff = Handoff.__new__(Handoff)
    handoff.inbound = spool
    recorder = Recorder()
    monkeypatch.setattr(handoff, "handle_many", recorder)
    return handoff, recorder


def new_keys(spool: Spool) -> list[str]:
    return [key for key, _ in spool.queued()]


def test_run_without_hold_hands_off_all_oldest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "inbound")
    for key, age in (("b", 2.0), ("a", 1.0), ("c", 3.0)):
        spooled(spool, key, age)
    handoff, recorder = handoff_on(spool, monkeypatch)
    assert handoff.run() == Progress(3)
    assert recorder.handled == ["c", "b", "a"]
    assert new_keys(spool) == []


def test_run_while_busy_holds_the_first_young_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "inbound")
    spooled(spool, "old", HANDOFF_MAX_WAIT + 2.0)
    spooled(spool, "older", HANDOFF_MAX_WAIT + 3.0)
    spooled(spool, "young", 1.0)
    spooled(spool, "younger", 0.5)
    young_at = dict(spool.queued())["young"]
    handoff, recorder = handoff_on(spool, monkeypatch)
    gateway = gateway_with(limits(in_data=1))
    progress = handoff.run(gateway._hold)
    assert recorder.handled == ["older", "old"], "overdue items go anyway"
    assert progress == Progress(2, young_at)
    assert new_keys(spool) == ["young", "younger"], "held items stay unclaimed"


def test_run_when_idle_hands_off_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "inbound")
    spooled(spool, "young", 0.0)
    spooled(spool, "old", HANDOFF_MAX_WAIT + 1.0)
    handoff, recorder = handoff_on(spool, monkeypatch)
    assert handoff.run(gateway_with(limits())._hold) == Progress(2)
    assert recorder.handled == ["old", "young"]


def test_hold_is_asked_with_the_seconds_waited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "inbound")
    spooled(spool, "a", 30.0)
    asked: list[float] = []
    handoff, _ = handoff_on(spool, monkeypatch)

    def hold(waited: float) -> bool:
        asked.append(waited)
        return True

    handoff.run(hold)
    assert len(asked) == 1 and 29.0 < asked[0] < 31.0


# The loop: waits on the event loop while held, then runs the workers


class FakeHandoff:
    def __init__(self) -> None:
        self.runs: list[float] = []

    def run(self, hold: object, *, share: int = 1) -> Progress:
        assert share == server.HANDOFF_WORKERS, "each run takes its share of the batches"
        self.runs.append(time.monotonic())
        return Progress(0)


async def loop_once(session_limits: Limits, pending_age: float) -> tuple[FakeHandoff, float]:
    gateway = gateway_with(session_limits)
    fake = FakeHandoff()
    gateway.handoff = fake  # type: ignore[assignment]
    gateway.node = SimpleNamespace(takes_work=False)  # type: ignore[assignment]  # one node
    gateway._wake = asyncio.Event()
    gateway._outbound_wake = asyncio.Event()
    gateway._pending_since = time.time() - pending_age
    with ThreadPoolExecutor(2) as background:
        gateway.background = background
        started = time.monotonic()
        gateway._wake.set()
        task = asyncio.create_task(gateway._handoff_loop())
        try:
            for _ in range(200):
                if len(fake.runs) >= server.HANDOFF_WORKERS:
                    break
                await asyncio.sleep(0.005)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    return fake, started


async def test_loop_runs_at_once_when_idle() -> None:
    fake, started = await loop_once(limits(), pending_age=0.0)
    assert len(fake.runs) == server.HANDOFF_WORKERS
    assert max(fake.runs) - started < 0.1


async def test_loop_waits_while_busy_until_the_oldest_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "HANDOFF_MAX_WAIT", 0.2)
    fake, started = await loop_once(limits(in_data=1), pending_age=0.0)
    assert len(fake.runs) == server.HANDOFF_WORKERS, "handed off anyway after HANDOFF_MAX_WAIT"
    assert 0.15 <= min(fake.runs) - started < 0.6


async def test_loop_does_not_wait_for_an_overdue_item_while_busy() -> None:
    fake, started = await loop_once(limits(in_data=1), pending_age=HANDOFF_MAX_WAIT + 1.0)
    assert len(fake.runs) == server.HANDOFF_WORKERS
    assert max(fake.runs) - started < 0.1


def test_side_by_side_runs_take_batches_of_their_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "inbound")
    for n in range(10):
        spooled(spool, f"m{n}", 10.0 - n)
    handoff, recorder = handoff_on(spool, monkeypatch)
    batches: list[int] = []

    def handle_many(items: list[SpoolItem]) -> list[SpoolItem]:
        batches.append(len(items))
        return recorder(items)

    monkeypatch.setattr(handoff, "handle_many", handle_many)
    assert handoff.run(share=2) == Progress(10)
    assert batches == [5, 5], "two runs side by side: half of what waits each"
    assert recorder.handled == [f"m{n}" for n in range(10)]
