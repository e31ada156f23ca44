"""A course roster read page by page, and attacks through its `rel="next"` links.

Names and Role Provisioning pages a roster: each answer names the next page in a
`Link: <...>; rel="next"` header. Before, Forge read the first page only, so a course larger
than the platform's page size came into its cohort cut short. After, `POST
/v1/cohorts/<id>/lti-roster` follows the next links, but a platform (or whoever controls
its answers) cannot use them: a next page on another origin than the roster URL the
platform gave (another host, another service on the same machine) is never called, and a
loop of next links is stopped (a page read before at once; ever-new pages at 50 pages,
members at 10,000). A refused roster enrols nobody: no half-read roster is stored.

The platforms are the local LTI platform emulator (tests/support/lti_platform.py); the
real spawn_service on uvicorn shares the world of tests/security/test_lti_launch.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from forge.classroom.cohorts import enrolled_cohorts
from forge.identity.lti_services import MAX_ROSTER_MEMBERS, MAX_ROSTER_PAGES

from ..support.lti_platform import LEARNER_ROLE
from .test_lti_launch import World
from .test_lti_launch import shared as shared  # its fixtures, one platform for this module
from .test_lti_launch import world as world
from .test_lti_privilege import _acme_cohort, _teacher


@pytest.fixture
def w(shared: World) -> Iterator[World]:
    """The shared platform; the emulators' rosters and paging knobs are reset after."""
    yield shared
    for emu in (shared.acme, shared.globex):
        emu.members, emu.page_size, emu.endless, emu.next_link = [], 0, False, None
        emu.roster_pages.clear()


def _sync(w: World, teacher: httpx.Client) -> httpx.Response:
    return teacher.post(f"/v1/cohorts/{_acme_cohort(w)}/lti-roster",
                        headers={"origin": w.forge.url})


def _learners(prefix: str, count: int) -> list[dict[str, object]]:
    return [{"user_id": f"{prefix}{n}", "roles": [LEARNER_ROLE], "status": "Active"}
            for n in range(count)]


def _enrolled(w: World, prefix: str, count: int) -> int:
    return sum(bool(enrolled_cohorts(w.forge.db, "acme", f"lti.{prefix}{n}"))
               for n in range(count))


def test_a_roster_of_three_pages_comes_in_whole(w: World) -> None:
    teacher = _teacher(w, "tpage")
    w.acme.members, w.acme.page_size = _learners("pg", 7), 3
    synced = _sync(w, teacher)
    assert synced.status_code == 200, synced.text
    assert synced.json() == {"cohort_id": _acme_cohort(w), "members": 7, "added": 7}
    assert len(w.acme.roster_pages) == 3  # pages of 3, 3 and 1
    assert _enrolled(w, "pg", 7) == 7


@pytest.mark.parametrize("where", ["other-service", "other-host"])
def test_a_next_page_on_another_origin_is_never_called(w: World, where: str) -> None:
    teacher = _teacher(w, f"t{where}")
    # Another service on the same machine (the other platform's port), or another host.
    w.acme.next_link = {"other-service": f"{w.globex.issuer}/memberships/course-101",
                        "other-host": "https://lms.example.net/memberships/course-101"}[where]
    w.acme.members = _learners(f"x{where[6]}", 2)
    synced = _sync(w, teacher)
    assert synced.status_code == 502, synced.text
    assert synced.json()["error"] == "lti_platform_failed"
    assert "not on the roster's own origin" in synced.text
    assert len(w.acme.roster_pages) == 1 and w.globex.roster_pages == []
    assert _enrolled(w, f"x{where[6]}", 2) == 0  # not even the first page's people


def test_endless_next_links_stop_at_the_page_bound(w: World) -> None:
    teacher = _teacher(w, "tloop")
    w.acme.members, w.acme.page_size, w.acme.endless = _learners("lp", 3), 1, True
    synced = _sync(w, teacher)
    assert synced.status_code == 502, synced.text
    assert f"more than {MAX_ROSTER_PAGES} pages" in synced.text
    assert len(w.acme.roster_pages) == MAX_ROSTER_PAGES
    assert _enrolled(w, "lp", 3) == 0


def test_a_next_link_back_to_a_page_read_stops_at_once(w: World) -> None:
    teacher = _teacher(w, "tself")
    w.acme.members = _learners("sf", 1)
    w.acme.next_link = f"{w.acme.issuer}/memberships/{w.acme.course_id}"  # the first page
    synced = _sync(w, teacher)
    assert synced.status_code == 502, synced.text
    assert "already read" in synced.text
    assert len(w.acme.roster_pages) == 1
    assert _enrolled(w, "sf", 1) == 0


def test_a_roster_above_the_member_bound_is_refused(w: World) -> None:
    teacher = _teacher(w, "tbig")
    w.acme.members, w.acme.page_size = _learners("big", MAX_ROSTER_MEMBERS + 1), 2000
    synced = _sync(w, teacher)
    assert synced.status_code == 502, synced.text
    assert f"more than {MAX_ROSTER_MEMBERS} members" in synced.text
    assert _enrolled(w, "big", 3) == 0
