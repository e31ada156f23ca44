"""The dashboard's cache of score summaries (`forge.services.spawn.web.score_cache`): kept a
while, at most so many, and never what the scoreboard did not have."""

from __future__ import annotations

from forge.services.spawn.web.score_cache import SummaryCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_summaries_are_kept_for_their_time_and_the_oldest_go_first() -> None:
    clock = Clock()
    cache = SummaryCache(ttl_s=60, max_entries=2, clock=clock)
    assert cache.known(["a", "b"]) == ({}, ["a", "b"])
    cache.keep({"a": {"score": 1.0}})
    clock.now += 30
    cache.keep({"b": {"score": 0.5}})
    assert cache.known(["a", "b", "c"]) == ({"a": {"score": 1.0}, "b": {"score": 0.5}}, ["c"])
    clock.now += 31  # a's time is up (results retention may have deleted it): asked again
    assert cache.known(["a", "b"]) == ({"b": {"score": 0.5}}, ["a"])
    cache.keep({"a": {"score": 1.0}, "c": {"score": 0.0}})  # three: b, the oldest, goes
    assert cache.known(["a", "b", "c"]) == ({"a": {"score": 1.0}, "c": {"score": 0.0}}, ["b"])
