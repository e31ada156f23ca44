"""A /teach form the platform refuses comes back filled in, on /teach, with why.

Probe BA: an instructor who pasted 200 account ids with one wrong line got an error page
whose "Go back" opened a fresh /teach, and the 200 lines were gone; a due time before
the opening lost both dates. Now a refused form (422) is answered with /teach itself
(status 422): the message at the top in the words of the form's labels, and that form
filled in as it was sent (a form under "Change the running class" opened). Real
spawn_service (uvicorn), SQLite and PostgreSQL.
"""

from __future__ import annotations

import html
import re

import pytest

from forge.services.spawn.web import teach

from ..security.test_cohort_caps import _csrf
from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_teach_roster_size import instructor_with_classes


def _textarea(page: str, cohort: str) -> str:
    found = re.search(rf'<textarea id="roster-{cohort}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found is not None
    return html.unescape(found.group(1))


def test_a_refused_form_comes_back_filled_in_with_why(
        make_spawn: MakeSpawn, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    env = make_spawn()
    origin = {"origin": env.url}
    with env.client() as c:
        ann, (a, b) = instructor_with_classes(env, c, "Net A", "Net B")
        roster = "\n".join([*(f"s{i:03d}" for i in range(57)), "john smith",
                            *(f"s{i:03d}" for i in range(58, 200))])
        sent = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                      data={"csrf": _csrf(c, "/teach"), "roster": roster})
        assert sent.status_code == 422, sent.text
        assert 'id="form-error"' in sent.text and "Add learners: line 58" in sent.text
        assert f'href="#c-{a}"' in sent.text
        assert _textarea(sent.text, a) == roster  # all 200 lines, as pasted
        assert _textarea(sent.text, b) == ""  # the other class's box is its own
        assert c.get(f"/v1/cohorts/{a}", headers=ann).json()["learners"] == []
        # Several bad lines: each is listed with its problem (the message named the first
        # and only the numbers of the others, so the instructor guessed at line 60's).
        several = roster + "\ns001\nS005\n"
        sent = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                      data={"csrf": _csrf(c, "/teach"), "roster": several})
        assert sent.status_code == 422 and "1 more bad line (202)" in sent.text
        listed = re.search(r'<ul class="problems">(.*?)</ul>', sent.text, re.S)
        assert listed is not None
        assert [html.unescape(re.sub(r"<[^>]+>", "", li)) for li in re.findall(
            r"<li>(.*?)</li>", listed.group(1))] == [
            'line 58: "john smith" is not an account id (letters, digits and . _ @ : -, at '
            "most 128 characters)",
            'line 202: "S005" is line 6\'s "s005" in other letter case: account ids are '
            "case-sensitive, keep the one spelled like the learner's account"]

        # As a browser outside UTC sends them (the page's script: toISOString).
        late = c.post(f"/teach/cohorts/{a}/assignments", headers=origin, data={
            "csrf": _csrf(c, "/teach"), "template_id": "lab-netplus", "attempts_allowed": "3",
            "opens_at": "2099-02-01T09:00:00.000Z", "closes_at": "2099-01-01T09:00:00.000Z"})
        assert late.status_code == 422, late.text
        assert "Not done: Due: must be after Opens" in late.text
        assert f'id="opens-{a}" type="datetime-local" name="opens_at" ' \
               'value="2099-02-01T09:00:00"' in late.text
        assert f'id="closes-{a}" type="datetime-local" name="closes_at" ' \
               'value="2099-01-01T09:00:00"' in late.text
        assert f'id="attempts-{a}" type="number" name="attempts_allowed" min="1" ' \
               'max="100" value="3"' in late.text
        assert 'name="hints_allowed" value="yes">' in late.text  # left unticked, as sent

        nobody = c.post(f"/teach/cohorts/{a}/remove", headers=origin, data={
            "csrf": _csrf(c, "/teach"), "subject": "bad id!"})
        assert nobody.status_code == 422  # refused before any lookup
        assert "Not done: Learner&#39;s account id: " in nobody.text
        assert re.search(r"<details open>\s*<summary>Change the running class", nobody.text)
        assert f'id="rm-who-{a}" name="subject" maxlength="128" value="bad id!"' in nobody.text
        # A learner the class does not have (a typo): the form comes back too (404), with
        # what was typed, not an error page that loses it.
        typo = c.post(f"/teach/cohorts/{a}/remove", headers=origin, data={
            "csrf": _csrf(c, "/teach"), "subject": "s999"})
        assert typo.status_code == 404 and 'id="form-error"' in typo.text
        assert "Not done: Learner&#39;s account id: no such learner in this cohort" in typo.text
        assert f'id="rm-who-{a}" name="subject" maxlength="128" value="s999"' in typo.text

        # What is sent back is text: a roster that closes the box and opens a script
        # stays inside the box.
        hostile = "ok\n</textarea><script>alert(1)</script>"
        back = c.post(f"/teach/cohorts/{a}/roster", headers=origin,
                      data={"csrf": _csrf(c, "/teach"), "roster": hostile})
        assert back.status_code == 422 and "<script>alert" not in back.text
        assert _textarea(back.text, a) == hostile

        # The page the form was sent from is the page shown again: with a class a page,
        # A (the older) is on the second, after B.
        monkeypatch.setattr(teach, "TEACH_PAGE", 1)
        second = c.post(f"/teach/cohorts/{a}/roster", headers=origin, data={
            "csrf": _csrf(c, "/teach"), "roster": "ok\nnot ok", "after": b})
        assert second.status_code == 422
        assert _textarea(second.text, a) == "ok\nnot ok" and f'id="roster-{b}"' not in second.text
        assert '<a href="/teach">Newest classes</a>' in second.text
