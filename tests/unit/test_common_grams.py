"""The trigrams a process remembers as common: for the ttl only, at most size of them."""

from __future__ import annotations

import pytest

from gateway.store.common_grams import CommonGrams


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_trigram_counted_to_the_cap_is_remembered_until_its_ttl_ends() -> None:
    clock = Clock()
    common = CommonGrams(ttl=60, clock=clock)
    common.remember(["ova", "nov"])

    assert common.among(["ova", "iva", "nov"]) == {"ova", "nov"}
    clock.now += 59.9
    assert common.among(["ova"]) == {"ova"}
    clock.now += 0.1
    assert common.among(["ova", "nov"]) == set()  # counted again from now on
    assert len(common) == 0


def test_counting_a_trigram_again_renews_it() -> None:
    clock = Clock()
    common = CommonGrams(ttl=60, clock=clock)
    common.remember(["ova"])
    clock.now += 50
    common.remember(["ova"])
    clock.now += 50
    assert common.among(["ova"]) == {"ova"}


def test_at_most_size_trigrams_are_kept_the_least_recently_counted_forgotten_first() -> None:
    common = CommonGrams(size=3, clock=Clock())
    common.remember(["aaa", "bbb", "ccc"])
    common.remember(["aaa"])  # confirmed: now the most recent
    common.remember(["ddd"])

    assert len(common) == 3
    assert common.among(["aaa", "bbb", "ccc", "ddd"]) == {"aaa", "ccc", "ddd"}


def test_forget_clears_every_trigram() -> None:
    common = CommonGrams(clock=Clock())
    common.remember(["ova"])
    common.forget()
    assert common.among(["ova"]) == set()


@pytest.mark.parametrize("named", [{"ttl": 0}, {"size": 0}, {"ttl": -1}])
def test_a_ttl_or_size_below_one_is_refused(named: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        CommonGrams(**named)  # type: ignore[arg-type]
