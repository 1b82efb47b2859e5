"""The hand-off's retry policy on a real spool: lasting failures and interruptions count, the
fifth sets the item aside with its count and reason; transient trouble counts nothing."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from gateway.core.errors import InvalidForm, StorageFull, StoreUnavailable
from gateway.inbound.retry import (
    INTERRUPTED,
    MAX_ATTEMPTS,
    HandoffRetry,
    Verdict,
    after_failure,
)
from gateway.store.spool import Spool, SpoolItem

KEY = "NO-SIRENE.NO-2026-000001.0123456789abcdef"


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "inbound")
    spool.put(KEY, b"raw and entity", {"partner": "NO-SIRENE", "raw_length": 3})
    return spool


def claimed(spool: Spool) -> SpoolItem:
    [item] = spool.claim([KEY])
    return item


def folder(spool: Spool) -> str:
    return spool.get(KEY).path.parent.name


def test_the_verdict_counts_one_attempt_more_and_keeps_the_reason() -> None:
    assert after_failure({"a": 1}, "why", 5) == Verdict(
        {"a": 1, "attempts": 1, "last_error": "why"}, 1, False
    )
    assert after_failure({"attempts": 3, "last_error": "old"}, "new", 5).meta == {
        "attempts": 4,
        "last_error": "new",
    }
    assert after_failure({"attempts": 4}, "why", 5).last
    assert after_failure({"attempts": "nonsense"}, "why", 5).attempts == 1
    assert after_failure({"attempts": -3}, "why", 5).attempts == 1


def test_five_attempts_as_before_then_quarantine(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    assert MAX_ATTEMPTS == 5
    retry = HandoffRetry(spool)
    for attempt in range(1, MAX_ATTEMPTS):
        item = claimed(spool)
        assert retry.failed(item, InvalidForm("line 1: bad")) is True
        again = spool.get(KEY)
        assert folder(spool) == "new"
        assert again.meta["attempts"] == attempt
        assert again.meta["last_error"].startswith("InvalidForm: ")
        assert again.payload() == b"raw and entity"
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        assert retry.failed(claimed(spool), InvalidForm("line 1: still bad")) is False
    aside = spool.get(KEY)
    assert folder(spool) == "quarantine"
    assert aside.meta["attempts"] == MAX_ATTEMPTS
    assert aside.meta["partner"] == "NO-SIRENE"
    assert aside.payload() == b"raw and entity"
    assert f"quarantined {KEY} after 5 attempts: InvalidForm: " in caplog.text
    assert spool.claim([KEY]) == []


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EIO, "I/O error"), StoreUnavailable(), StorageFull()],
)
def test_transient_trouble_counts_no_attempt(spool: Spool, error: Exception) -> None:
    retry = HandoffRetry(spool, max_attempts=1)
    item = claimed(spool)
    inode = item.path.stat().st_ino
    assert retry.failed(item, error) is True
    assert folder(spool) == "new"
    assert spool.get(KEY).meta == {"partner": "NO-SIRENE", "raw_length": 3}
    assert spool.get(KEY).path.stat().st_ino == inode  # put back by a rename, untouched


def test_a_full_disk_during_the_count_puts_the_item_back_untouched(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise StorageFull()

    monkeypatch.setattr(spool, "_write", full)
    assert HandoffRetry(spool).failed(claimed(spool), LookupError("no such desk")) is True
    assert folder(spool) == "new"
    assert "attempts" not in spool.get(KEY).meta


def test_an_interrupted_hand_off_counts_as_an_attempt(tmp_path: Path, spool: Spool) -> None:
    """An item that kills the gateway each time ends in quarantine after five starts."""
    spool.put("other", b"x", {"raw_length": 1})
    spool.claim(["other"])  # this one was claimed too, once
    for start in range(1, MAX_ATTEMPTS + 1):
        claimed(spool)  # a hand-off takes it; the process dies
        after = Spool(tmp_path / "inbound")
        recovery = after.recover()
        set_aside = HandoffRetry(after).interrupted(recovery.interrupted)
        if start == 1:
            assert sorted(item.key for item in recovery.interrupted) == [KEY, "other"]
            assert spool.get("other").meta == {
                "raw_length": 1,
                "attempts": 1,
                "last_error": INTERRUPTED,
            }
        meta = after.get(KEY).meta
        assert (meta["attempts"], meta["last_error"]) == (start, INTERRUPTED)
        if start < MAX_ATTEMPTS:
            assert set_aside == 0 and folder(after) == "new"
    assert set_aside == 1 and folder(spool) == "quarantine"


def test_max_attempts_must_be_positive(spool: Spool) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        HandoffRetry(spool, max_attempts=0)
