"""The response cache's own rules: one snapshot at a time, least recently used answers dropped first."""

from __future__ import annotations

from api.cache import CachedAnswer, ResponseCache


def answer(size: int, data: object = "x") -> CachedAnswer:
    return CachedAnswer(data=data, extra_meta={}, size=size)


def test_an_answer_is_served_only_under_the_snapshot_it_was_asked_with() -> None:
    cache = ResponseCache(1000)
    assert cache.get(("a",), "10:10:") is None  # the first request sees snapshot 10
    cache.put(("a",), "10:10:", answer(10, "positions"))
    assert cache.get(("a",), "10:10:").data == "positions"
    assert cache.get(("a",), "10:12:11") is None  # a write started: everything cached is dropped
    assert cache.stats()["entries"] == 0
    assert cache.get(("a",), "10:10:") is None  # and an older snapshot never brings it back


def test_an_answer_asked_under_an_older_snapshot_is_not_stored() -> None:
    cache = ResponseCache(1000)
    cache.get(("a",), "10:10:")
    cache.get(("b",), "11:11:")  # meanwhile another request saw a newer snapshot
    cache.put(("a",), "10:10:", answer(10))  # computed from the older state: must not be served as current
    assert cache.stats()["entries"] == 0
    assert cache.get(("a",), "11:11:") is None


def test_least_recently_used_answers_go_first_within_the_byte_budget() -> None:
    cache = ResponseCache(100)
    cache.get(("warm",), "s")
    for name in ("a", "b", "c"):
        cache.put((name,), "s", answer(40))
    assert cache.stats()["bytes"] == 80  # a went to make room for c
    assert cache.get(("a",), "s") is None
    assert cache.get(("b",), "s") is not None  # b is now the most recently used
    cache.put(("d",), "s", answer(40))
    assert cache.get(("c",), "s") is None and cache.get(("b",), "s") is not None
    cache.put(("huge",), "s", answer(101))  # larger than the whole budget: not kept
    assert cache.get(("huge",), "s") is None


def test_a_zero_budget_disables_the_cache() -> None:
    assert not ResponseCache(0).enabled
