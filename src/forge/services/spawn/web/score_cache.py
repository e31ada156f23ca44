"""Score summaries the instructor dashboard read from the scoreboard, kept for a while.

Every dashboard page, its JSON and its CSV asked the scoreboard about every graded lab of
the class, uncached: 3,500 labs took 0.65 s a page and 10,000 about 2 s, four such pages
at once 8 s each (review CD). A lab's score.json is written once, so a summary read is
kept ``ttl_s`` (then asked again, so results retention deleted leave the dashboard within
that time) and at most ``max_entries`` of them (the oldest go first). Only summaries found
are kept: a lab not graded yet is asked about again at the next read. One cache per
spawn_service worker, used from its event loop only.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

TTL_S = 600.0
MAX_ENTRIES = 20_000  # a class of 2,000 learners, 10 graded labs each


class SummaryCache:
    """scenario id -> the scoreboard's summary of its score, for ``ttl_s`` each (a summary
    is a few hundred bytes: at most some MiB per worker)."""

    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._kept: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def known(self, ids: Iterable[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """(the summaries kept of ``ids``, the ids to ask the scoreboard about)."""
        now = self._clock()
        found: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        for scenario_id in ids:
            entry = self._kept.get(scenario_id)
            if entry is not None and now - entry[0] < self.ttl_s:
                found[scenario_id] = entry[1]
            else:
                missing.append(scenario_id)
        return found, missing

    def keep(self, summaries: dict[str, dict[str, Any]]) -> None:
        """Keep ``summaries`` (read just now), dropping the oldest beyond ``max_entries``."""
        now = self._clock()
        for scenario_id, summary in summaries.items():
            self._kept.pop(scenario_id, None)
            self._kept[scenario_id] = (now, summary)
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)
