"""Spool.queued: the keys waiting in new/, oldest first, in one scan; claimed items are not."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gateway.store.spool import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def put_at(spool: Spool, key: str, at: float) -> None:
    item = spool.put(key, b"payload", {"n": key})
    os.utime(item.path, (at, at))


def keys(spool: Spool) -> list[str]:
    return [key for key, _ in spool.queued()]


def test_empty_spool_has_nothing_queued(spool: Spool) -> None:
    assert spool.queued() == []


def test_oldest_first_with_the_instant_each_was_put(spool: Spool) -> None:
    now = time.time()
    for key, age in (("middle", 20.0), ("newest", 1.0), ("oldest", 300.0)):
        put_at(spool, key, now - age)
    queued = spool.queued()
    assert [key for key, _ in queued] == ["oldest", "middle", "newest"]
    for (_, at), age in zip(queued, (300.0, 20.0, 1.0), strict=True):
        assert at == pytest.approx(now - age, abs=1e-3)


def test_order_is_by_mtime_not_by_name_nor_creation(spool: Spool) -> None:
    now = time.time()
    put_at(spool, "a", now - 1)
    put_at(spool, "z", now - 2)
    put_at(spool, "m", now - 3)
    assert keys(spool) == ["m", "z", "a"]


def test_same_instant_keeps_a_stable_order(spool: Spool) -> None:
    now = time.time()
    for key in ("c", "a", "b"):
        put_at(spool, key, now)
    assert keys(spool) == sorted(keys(spool)) == ["a", "b", "c"]


def test_claimed_finished_and_quarantined_items_are_not_queued(spool: Spool) -> None:
    now = time.time()
    for n, key in enumerate(("done", "claimed", "waiting", "aside")):
        put_at(spool, key, now - 10 + n)
    [item] = spool.claim(["done"])
    assert spool.finish([item]) == []
    assert [item.key for item in spool.claim(["claimed"])] == ["claimed"]
    [aside] = spool.claim(["aside"])
    spool.set_aside(aside, "a test")
    assert keys(spool) == ["waiting"]


def test_an_item_requeued_with_new_metadata_is_queued_again_as_new(spool: Spool) -> None:
    now = time.time()
    put_at(spool, "retry", now - 100)
    put_at(spool, "other", now - 50)
    [item] = spool.claim(["retry"])
    spool.requeue(item, {**item.meta, "attempts": 1})
    assert keys(spool) == ["other", "retry"], "a rewritten item goes to the back"


def test_stray_files_in_new_are_ignored(spool: Spool) -> None:
    put_at(spool, "real", time.time())
    (spool.new / "stray.tmp").write_bytes(b"not ours")
    (spool.new / ".hidden").write_bytes(b"")
    assert keys(spool) == ["real"]


def test_keys_round_trip_through_claim(spool: Spool) -> None:
    put_at(spool, "NO-2026-000001.eml", time.time())
    [(key, _)] = spool.queued()
    [item] = spool.claim([key])
    assert item.key == "NO-2026-000001.eml"
    assert spool.queued() == []


def test_queued_agrees_with_waiting(spool: Spool) -> None:
    now = time.time()
    for n in range(8):
        put_at(spool, f"k{(n * 5) % 8}", now - n)
    assert keys(spool) == [item.key for item in spool.waiting()]
