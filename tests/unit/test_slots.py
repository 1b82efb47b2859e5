"""The console's bound on slow work (gateway.web.slots): a slot is taken without waiting or
refused, given back on the way out even when the work fails, and shared by threads."""

from __future__ import annotations

import threading

import pytest

from gateway.web.slots import Slots


def test_a_slot_beyond_the_size_is_refused_and_given_back_after() -> None:
    slots = Slots(2)
    with slots.held() as first, slots.held() as second, slots.held() as third:
        assert (first, second, third) == (True, True, False)
        assert slots.busy == 2
    assert slots.busy == 0
    with slots.held() as again:
        assert again


def test_a_slot_is_given_back_when_the_work_fails() -> None:
    slots = Slots(1)
    with pytest.raises(RuntimeError), slots.held() as taken:
        assert taken
        raise RuntimeError("the render failed")
    assert slots.busy == 0


def test_threads_share_the_slots() -> None:
    slots = Slots(1)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with slots.held() as taken:
            assert taken
            holding.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    with slots.held() as taken:
        assert not taken
    release.set()
    holder.join()
    with slots.held() as taken:
        assert taken


def test_no_slots_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        Slots(0)
