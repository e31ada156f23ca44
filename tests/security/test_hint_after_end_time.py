"""Attack: read hints after the lab's time is up, before the reaper grades it.

A lab past its end time stays `running` until the reaper's next round grades it (every few
seconds, one lab after another). Task checks, terminals and extensions refused such a lab,
but hint reveals did not: on a live stack a learner whose lab had ended a second before
revealed h1-h3 and read their texts (each reveal recorded and charged to the verdict). Now a
reveal past the end time is refused like one of a lab that is no longer running
(`409 not_running`, naming the end time), its text is not served and nothing is recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from forge.store.models import HintReveal, Scenario

from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401  (fixture)
from ..spawn.hinted import HINT_TEXTS, hinted_spawn, running_lab


def _ends(env: SpawnEnv, sid: str, when: datetime) -> None:
    """The lab's end time, as its node set it (and the clock has reached it)."""
    with env.state.ctx.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None
        row.expires_at = when


def _reveals(env: SpawnEnv) -> int:
    with env.state.ctx.db.read() as sess:
        return int(sess.scalar(select(func.count()).select_from(HintReveal)) or 0)


def test_no_hint_is_revealed_or_charged_after_the_end_time(
    make_spawn: MakeSpawn, tmp_path: Path  # noqa: F811
) -> None:
    env = hinted_spawn(make_spawn, tmp_path)
    sid, headers = running_lab(env)
    _ends(env, sid, datetime.now(UTC) + timedelta(minutes=30))
    with httpx.Client(base_url=env.url, timeout=20, headers=headers) as client:
        before = client.post(f"/v1/scenarios/{sid}/hints/h1")
        assert before.status_code == 200 and before.json()["text"] == HINT_TEXTS[0]

        _ends(env, sid, datetime.now(UTC) - timedelta(seconds=1))  # still `running`
        late = client.post(f"/v1/scenarios/{sid}/hints/h2")
        assert late.status_code == 409 and late.json()["error"] == "not_running"
        assert "reached its end time" in late.json()["message"]
        assert HINT_TEXTS[1] not in late.text
        listed = client.get(f"/v1/scenarios/{sid}/hints").json()["hints"]
        assert [h.get("text") for h in listed] == [HINT_TEXTS[0], None, None]
        # A hint revealed in time is still served (it was paid for), never re-dated.
        again = client.post(f"/v1/scenarios/{sid}/hints/h1")
        assert again.status_code == 200
        assert again.json()["revealed_at"] == before.json()["revealed_at"]
    assert _reveals(env) == 1
