"""The retry policy of outbound delivery: the doubling delays, their cap, the jitter, giving up,
the metadata it keeps, and an interrupted item requeued with its schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.core.clock import FakeClock
from gateway.core.config import Outbound
from gateway.outbound.retry import (
    RetryPolicy,
    backoff_delay,
    gives_up,
    iso,
    not_before,
    requeue_interrupted,
)
from gateway.outbound.smtpclient import header_is_clean, partner_words
from gateway.store.spool import Spool

EXACT = Outbound(
    retry_first=timedelta(minutes=1),
    retry_max=timedelta(hours=1),
    give_up_after=timedelta(days=5),
    jitter=0.0,
)


def rng() -> random.Random:
    return random.Random(1)  # noqa: S311 - jitter, not secrecy


def test_delays_double_from_retry_first_up_to_retry_max() -> None:
    minutes = [backoff_delay(n, EXACT, rng()) / timedelta(minutes=1) for n in range(1, 10)]
    assert minutes == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_the_cap_holds_for_any_number_of_attempts() -> None:
    assert backoff_delay(10_000, EXACT, rng()) == timedelta(hours=1)


def test_a_cap_that_is_not_a_power_of_two_of_the_first() -> None:
    settings = Outbound(retry_first=timedelta(seconds=30), retry_max=timedelta(minutes=5), jitter=0)
    delays = [backoff_delay(n, settings, rng()).total_seconds() for n in range(1, 7)]
    assert delays == [30, 60, 120, 240, 300, 300]


def test_retry_first_equal_to_retry_max_is_a_fixed_delay() -> None:
    settings = Outbound(retry_first=timedelta(minutes=5), retry_max=timedelta(minutes=5), jitter=0)
    assert {backoff_delay(n, settings, rng()) for n in range(1, 20)} == {timedelta(minutes=5)}


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(attempt, EXACT, rng())


def test_jitter_stays_within_its_bounds_and_spreads() -> None:
    settings = Outbound(
        retry_first=timedelta(minutes=1), retry_max=timedelta(minutes=10), jitter=0.2
    )
    source = rng()
    for attempt, base in [(1, 60.0), (3, 240.0), (9, 600.0)]:
        draws = [backoff_delay(attempt, settings, source).total_seconds() for _ in range(2000)]
        assert min(draws) >= base * 0.8
        assert max(draws) <= base * 1.2
        # Spread over the whole range, not stuck at one end.
        assert min(draws) < base * 0.82
        assert max(draws) > base * 1.18
        assert abs(sum(draws) / len(draws) - base) < base * 0.02


def test_the_same_seed_gives_the_same_delays() -> None:
    settings = Outbound(jitter=0.5)
    first = [backoff_delay(n, settings, random.Random(42)) for n in range(1, 6)]  # noqa: S311
    again = [backoff_delay(n, settings, random.Random(42)) for n in range(1, 6)]  # noqa: S311
    assert first == again


def test_gives_up_once_give_up_after_has_passed_since_the_first_attempt() -> None:
    first = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    settings = Outbound(give_up_after=timedelta(days=5))
    assert not gives_up(first, first, settings)
    assert not gives_up(first, first + timedelta(days=5) - timedelta(microseconds=1), settings)
    assert gives_up(first, first + timedelta(days=5), settings)
    assert gives_up(first, first + timedelta(days=9), settings)


def test_the_schedule_until_giving_up() -> None:
    """With the defaults (1 min doubling to 1 h, 5 days): how many tries before a failure."""
    settings = Outbound(jitter=0.0)
    first = now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    attempts = 1
    while not gives_up(first, now, settings):
        now += backoff_delay(attempts, settings, rng())
        attempts += 1
    # 1+2+4+8+16+32 = 63 minutes, then hourly to 5 days: 6 + 119 delays, then the last try.
    assert attempts == 126
    assert now - first == timedelta(days=5, minutes=3)


def test_not_before_reads_the_instant_or_means_at_once() -> None:
    assert not_before({}) is None
    assert not_before({"not_before": "garbage"}) is None
    assert not_before({"not_before": 12}) is None
    assert not_before({"not_before": "2026-03-02T09:00:00+00:00"}) == datetime(
        2026, 3, 2, 9, 0, tzinfo=UTC
    )
    assert not_before({"not_before": "2026-03-02T10:00:00+01:00"}) == datetime(
        2026, 3, 2, 9, 0, tzinfo=UTC
    )
    assert not_before({"not_before": "2026-03-02T09:00:00Z"}) == datetime(
        2026, 3, 2, 9, 0, tzinfo=UTC
    )


def test_the_policy_schedules_each_try_from_the_clock() -> None:
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    policy = RetryPolicy(EXACT, rng())
    meta: dict[str, object] = {"kind": "form", "to": "a@b"}
    first = clock.now()
    for attempt, wait in enumerate([1, 2, 4, 8], start=1):
        assert policy.give_up(meta, clock.now()) is None
        retry = policy.next_try(meta, f"451 busy #{attempt}", clock.now())
        assert (retry.attempts, retry.delay) == (attempt, timedelta(minutes=wait))
        assert retry.meta == {
            "kind": "form",
            "to": "a@b",
            "attempts": attempt,
            "first_attempt_at": iso(first),  # the first attempt's instant, kept
            "not_before": iso(clock.now() + timedelta(minutes=wait)),
            "last_error": f"451 busy #{attempt}",
        }
        meta = retry.meta
        clock.set(not_before(meta))  # type: ignore[arg-type]
    assert clock.now() == first + timedelta(minutes=15)


def test_the_policy_gives_up_give_up_after_since_the_first_attempt() -> None:
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    policy = RetryPolicy(EXACT, rng())
    meta = policy.next_try({}, "451", clock.now()).meta
    clock.advance(timedelta(days=5) - timedelta(seconds=1))
    assert policy.give_up(meta, clock.now()) is None
    clock.advance(timedelta(seconds=1))
    assert policy.give_up(meta, clock.now()) == (
        "gave up after 2 attempts since 2026-03-02T09:00:00+00:00"
    )
    # Never tried before: its first attempt is now, so it is not out of time.
    assert policy.give_up({}, clock.now()) is None


def test_an_interrupted_item_is_requeued_with_its_schedule(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "outbound")
    meta = {
        "kind": "form",
        "attempts": 3,
        "first_attempt_at": "2026-03-02T09:00:00+00:00",
        "not_before": "2026-03-02T09:07:00+00:00",
        "last_error": "451 busy",
    }
    spool.put("form.RO-2026-000001", b"sealed", meta)
    spool.put("notice.x", b"mail", {"kind": "notice"})
    spool.claim(["form.RO-2026-000001", "notice.x"])  # then the process dies
    after = Spool(tmp_path / "outbound")
    recovery = after.recover()
    assert requeue_interrupted(after, recovery.interrupted) == 2
    assert [item.key for item in after.waiting()] == ["form.RO-2026-000001", "notice.x"]
    assert after.get("form.RO-2026-000001").meta == meta  # no attempt counted, nothing moved
    assert list(after.cur.iterdir()) == list(after.quarantine.iterdir()) == []


def test_partner_words_are_one_printable_line_of_at_most_500() -> None:
    assert partner_words("550 5.7.1 no\r\n550 5.7.1 such\tuser\x1b[0m\x00") == (
        "550 5.7.1 no 550 5.7.1 such user [0m"
    )
    assert len(partner_words("y" * 2000)) == 500
    assert partner_words("a\u2028b\x85c") == "a b c"


@pytest.mark.parametrize(
    ("message", "clean"),
    [
        (b"From: a\r\nTo: b\r\n\r\nbody\nwith bare LF is the body's business\r\n", True),
        (b"From: a\r\nTo: b\r\n", True),  # no body
        (b"From: a\nBcc: c\r\nTo: b\r\n\r\nbody\r\n", False),
        (b"From: a\r\nTo: b\r\r\n\r\nbody\r\n", False),
        (b"From: a\r\nSubject: x\x00y\r\n\r\nbody\r\n", False),
        (b"From: a\r\nTo: b\n\r\nbody", False),
    ],
)
def test_header_is_clean(message: bytes, clean: bool) -> None:
    assert header_is_clean(message) is clean
