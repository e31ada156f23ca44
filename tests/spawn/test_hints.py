"""Hints on demand through spawn_service's API: cost shown first, text only after a reveal
recorded in the store, in order per task, only while the lab runs, owner only."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from forge.store.models import HintReveal

from .conftest import MakeSpawn
from .hinted import HINT_TEXTS, hinted_spawn, reads_of, running_lab, set_state


def test_hints_are_revealed_in_order_recorded_first_and_only_by_their_owner(
    make_spawn: MakeSpawn, tmp_path: Path
) -> None:
    env = hinted_spawn(make_spawn, tmp_path)
    sid, headers = running_lab(env)
    _, stranger = running_lab(env, subject="mallory")
    with env.client() as client:
        listed = client.get(f"/v1/scenarios/{sid}/hints", headers=headers).json()["hints"]
        assert [(h["id"], h["cost"], h["cost_label"], h["revealed"]) for h in listed] == [
            ("h1", 0.0, "free", False), ("h2", 0.25, "costs 25 % of the score", False),
            ("h3", 0.1, "costs 10 % of the score", False)]
        assert all("text" not in h for h in listed)

        # In order per task: h2 needs h1 first; h3 (the whole lab) is its own sequence.
        early = client.post(f"/v1/scenarios/{sid}/hints/h2", headers=headers)
        assert early.status_code == 409 and early.json()["error"] == "hint_out_of_order"
        assert "reveal hint 1 first" in early.json()["message"]
        assert HINT_TEXTS[1] not in early.text
        third = client.post(f"/v1/scenarios/{sid}/hints/h3", headers=headers)
        assert third.status_code == 200 and third.json()["text"] == HINT_TEXTS[2]
        first = client.post(f"/v1/scenarios/{sid}/hints/h1", headers=headers).json()
        assert first["text"] == HINT_TEXTS[0] and first["cost"] == 0.0
        again = client.post(f"/v1/scenarios/{sid}/hints/h1", headers=headers).json()
        assert again["revealed_at"] == first["revealed_at"]  # once, never re-dated

        # Someone else's lab does not exist for them; an unknown hint names the field.
        assert client.post(f"/v1/scenarios/{sid}/hints/h2",
                           headers=stranger).status_code == 404
        assert client.get(f"/v1/scenarios/{sid}/hints", headers=stranger).status_code == 404
        unknown = client.post(f"/v1/scenarios/{sid}/hints/h9", headers=headers)
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_hint"
        assert unknown.json()["details"][0]["field"] == "hint"

        # Submit from the page without script: a confirmation page says what ends and
        # what the hints cost; the lab is not handed in until it is confirmed.
        browser = env.client(headers={"origin": env.url})
        assert browser.post("/signin", data=dict(api_key=headers["x-api-key"])).status_code == 303
        # The lab page's poll, every 1.5 s while the lab runs, says what the reveals cost
        # (another tab's too) from one store read: the row and its reveals together.
        reads = reads_of(browser, f"/lab/{sid}/status")
        assert reads.body["hints"] == {"count": 2, "percent": "10", "revealed": ["h1", "h3"]}
        assert reads.checkouts == 1
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get(f"/lab/{sid}").text)
        assert csrf is not None
        asked = browser.post(f"/lab/{sid}/submit", data={"csrf": csrf.group(1)})
        assert asked.status_code == 200
        assert ("Submitting ends the lab: your terminals close, the lab is deleted, and it is "
                "graded once. You have used 2 hints (\N{MINUS SIGN}10 %).") in asked.text
        assert 'name="confirm" value="yes"' in asked.text
        assert client.get(f"/v1/scenarios/{sid}", headers=headers).json()["state"] == "running"
        browser.close()

        # Once the lab is no longer running, nothing more can be revealed.
        set_state(env, sid, "grading")
        late = client.post(f"/v1/scenarios/{sid}/hints/h2", headers=headers)
        assert late.status_code == 409 and late.json()["error"] == "not_running"
        listed = client.get(f"/v1/scenarios/{sid}/hints", headers=headers).json()["hints"]
        assert [h.get("text") for h in listed] == [HINT_TEXTS[0], None, HINT_TEXTS[2]]

    with env.state.ctx.db.read() as sess:
        rows = [(r.hint_index, r.cost, r.tenant_id) for r in sess.scalars(
            select(HintReveal).where(HintReveal.scenario_id == sid)
            .order_by(HintReveal.hint_index))]
    assert rows == [(0, 0.0, "acme"), (2, 0.1, "acme")]


def test_without_script_a_hint_that_costs_score_is_revealed_only_once_confirmed(
    make_spawn: MakeSpawn, tmp_path: Path
) -> None:
    """The lab page without JavaScript: a press on a paid hint's button answers a page that
    says what it costs and charges nothing; its "Yes" reveals it. A free hint needs no
    second press, and a hint already revealed is not asked about again."""
    env = hinted_spawn(make_spawn, tmp_path)
    sid, headers = running_lab(env)
    with env.client() as browser:
        browser.headers["origin"] = str(browser.base_url).rstrip("/")
        assert browser.post("/signin", data={"api_key": headers["x-api-key"]}).status_code == 303
        found = re.search(r'name="csrf" value="([^"]+)"', browser.get(f"/lab/{sid}").text)
        assert found is not None
        csrf = found.group(1)

        # A reveal that would be refused is refused at once, as the page's script is told,
        # not asked about first: hint 2 opens after hint 1 (the same task).
        early = browser.post(f"/lab/{sid}/hints/h2", data={"csrf": csrf})
        assert early.status_code == 409 and "Reveal hint 1 first" in early.text
        assert "Reveal hint 2?" not in early.text

        free = browser.post(f"/lab/{sid}/hints/h1", data={"csrf": csrf})
        assert free.status_code == 303 and free.headers["location"].endswith("#hint-h1")

        asked = browser.post(f"/lab/{sid}/hints/h2", data={"csrf": csrf})
        assert asked.status_code == 200
        assert "Reveal hint 2?" in asked.text and "costs 25 % of the score" in asked.text
        assert 'name="confirm" value="yes"' in asked.text and HINT_TEXTS[1] not in asked.text
        with env.state.ctx.db.read() as sess:
            assert [r.hint_index for r in sess.scalars(select(HintReveal))] == [0]

        yes = browser.post(f"/lab/{sid}/hints/h2", data={"csrf": csrf, "confirm": "yes"})
        assert yes.status_code == 303 and yes.headers["location"].endswith("#hint-h2")
        assert HINT_TEXTS[1] in browser.get(f"/lab/{sid}").text
        again = browser.post(f"/lab/{sid}/hints/h2", data={"csrf": csrf})
        assert again.status_code == 303  # already paid for: nothing to confirm
        # An unknown hint is refused as before, not asked about.
        assert browser.post(f"/lab/{sid}/hints/h9", data={"csrf": csrf}).status_code == 404
        # Once the lab is handed in, a hint not yet revealed is refused, not asked about.
        set_state(env, sid, "grading")
        ended = browser.post(f"/lab/{sid}/hints/h3", data={"csrf": csrf})
        assert ended.status_code == 409 and "Reveal hint 3?" not in ended.text
        with env.state.ctx.db.read() as sess:
            assert sorted(r.hint_index for r in sess.scalars(select(HintReveal))) == [0, 1]
