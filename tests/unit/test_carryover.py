"""Carryover: what the intake checked, kept for the hand-off within its bounds."""

from __future__ import annotations

import pytest

from gateway.crypto.pgpmime import Attachment, Payload
from gateway.forms.xmlforms import FormValidator, Validation
from gateway.inbound.carryover import TREE_FACTOR, Carryover, weight

FORM = b"<Form>" + b"x" * 994 + b"</Form>"


@pytest.fixture
def checked(validator: FormValidator) -> tuple[Payload, Validation]:
    payload = Payload(FORM, (Attachment("photo.jpg", "image/jpeg", b"j" * 500),))
    return payload, validator.validate(payload.form)


def test_taken_once(checked: tuple[Payload, Validation]) -> None:
    kept = Carryover()
    kept.put("a", *checked)
    assert len(kept) == 1 and kept.bytes == weight(checked[0]) == TREE_FACTOR * len(FORM) + 500
    assert kept.take("a") == checked
    assert kept.take("a") is None
    assert len(kept) == 0 and kept.bytes == 0


def test_oldest_dropped_first_by_entries_and_by_bytes(
    checked: tuple[Payload, Validation],
) -> None:
    size = weight(checked[0])
    kept = Carryover(max_entries=2, max_bytes=10 * size)
    for key in ("a", "b", "c"):
        kept.put(key, *checked)
    assert kept.take("a") is None and kept.take("b") is not None and kept.take("c") is not None
    by_bytes = Carryover(max_entries=100, max_bytes=2 * size)
    for key in ("a", "b", "c"):
        by_bytes.put(key, *checked)
    assert len(by_bytes) == 2 and by_bytes.bytes == 2 * size
    assert by_bytes.take("a") is None


def test_an_entry_over_the_bound_alone_is_not_kept(checked: tuple[Payload, Validation]) -> None:
    kept = Carryover(max_bytes=weight(checked[0]) - 1)
    kept.put("a", *checked)
    assert len(kept) == 0 and kept.take("a") is None


def test_a_second_put_replaces_and_discard_removes(checked: tuple[Payload, Validation]) -> None:
    kept = Carryover()
    kept.put("a", *checked)
    kept.put("a", *checked)
    assert len(kept) == 1 and kept.bytes == weight(checked[0])
    kept.discard("a")
    kept.discard("nothing")
    assert len(kept) == 0 and kept.bytes == 0


def test_zero_entries_keeps_nothing(checked: tuple[Payload, Validation]) -> None:
    kept = Carryover(max_entries=0)
    kept.put("a", *checked)
    assert kept.take("a") is None and kept.bytes == 0
