"""A course roster read page by page, and attacks through its `rel="next"` links.

Names and Role Provisioning pages a roster: each answer names the next page in a
`Link: <...>; rel="next"` header. Before, Forge read the first page only, so a course larger
than the platform's page size came into its cohort cut short. After, `POST
/v1/cohorts/<id>/lti-roster` follows the next links, but a platform (or whoever controls
its answers) cannot use them: a next page on another origin than the roster URL the
platform gave (another host, another service on the same machine) is never called, and a
loop of next links is stopped (a page read before at once; ever-new pages at 50 pages,
members at 10,000, answers at MAX_ROSTER_BYTES in all). A next link is found as RFC 8288
writes it (`rel=Next`, `rel="next last"`), never missed to leave a roster silently cut. One
sync is bounded in time as a whole (slow pages, each within the read timeout, cannot hold
an instructor's request for long) and runs once per cohort at a time. A refused roster
enrols nobody: no half-read roster is stored.

The platforms are the local LTI platform emulator (tests/support/lti_platform.py); the
real spawn_service on uvicorn shares the world of tests/security/test_lti_launch.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from forge.classroom.cohorts import enrolled_cohorts
from forge.identity import lti_services
from forge.identity.lti_services import MAX_ROSTER_BYTES, MAX_ROSTER_MEMBERS, MAX_ROSTER_PAGES

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
        emu.next_rel, emu.page_delay_s, emu.padding = '"next"', 0.0, 0
        emu.link_header = None
        emu.roster_gate.set()
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
    assert synced.json() | {"not_in_course": None} == {
        "cohort_id": _acme_cohort(w), "members": 7, "added": 7, "not_in_course": None}
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


@pytest.mark.parametrize("rel", ["Next", '"next last"', '"prev  NEXT"'])
def test_a_next_link_written_any_way_rfc_8288_allows_is_followed(w: World, rel: str) -> None:
    teacher = _teacher(w, "trel")
    w.acme.members, w.acme.page_size, w.acme.next_rel = _learners("rl", 7), 3, rel
    synced = _sync(w, teacher)
    assert synced.status_code == 200, synced.text
    assert synced.json()["members"] == 7  # not the first page only
    assert len(w.acme.roster_pages) == 3
    assert _enrolled(w, "rl", 7) == 7


@pytest.mark.parametrize("header", ["<" * 64 * 1024, "<a" * 32 * 1024 + '>; rel="next"'])
def test_a_huge_link_header_is_refused_without_freezing_the_service(w: World, header: str
                                                                     ) -> None:
    """A Link header of ~64 KiB (the HTTP client takes up to 100 KiB): before, one full of
    `<` took the link parser quadratic time on spawn_service's event loop (99 KB: 97 s,
    every request of every tenant stalled). Now a header over MAX_LINK_HEADER is refused
    before it is parsed, and the parser is linear anyway."""
    teacher = _teacher(w, "thuge")
    w.acme.members, w.acme.link_header = _learners("hg", 2), header
    synced = _sync(w, teacher)
    assert synced.status_code == 502, synced.text
    assert synced.json()["error"] == "lti_platform_failed"
    assert "Link header larger than" in synced.text
    assert _enrolled(w, "hg", 2) == 0
    assert _sync(w, teacher).status_code == 502  # the service still answers


def test_a_link_header_full_of_brackets_under_the_bound_is_read(w: World) -> None:
    """Just under the bound, `<` filler before the real next link: the parser still finds
    it (in linear time) and the roster comes in whole."""
    teacher = _teacher(w, "tbrk")
    w.acme.members, w.acme.page_size = _learners("bk", 4), 2
    w.acme.next_rel = '"next", ' + "<" * (lti_services.MAX_LINK_HEADER - 200)
    synced = _sync(w, teacher)
    assert synced.status_code == 200, synced.text
    assert _enrolled(w, "bk", 4) == 4


def test_slow_pages_stop_at_the_sync_deadline(w: World, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    """Each page within the read timeout, endless: the sync as a whole stops at its
    deadline (shortened here) instead of reading 50 slow pages."""
    monkeypatch.setattr(lti_services, "ROSTER_DEADLINE_S", 1.0)
    teacher = _teacher(w, "tslow")
    w.acme.members, w.acme.page_size, w.acme.endless = _learners("sl", 3), 1, True
    w.acme.page_delay_s = 0.2
    synced = _sync(w, teacher)
    assert synced.status_code == 502, synced.text
    assert synced.json()["error"] == "lti_platform_failed"
    assert "roster took too long" in synced.text
    assert len(w.acme.roster_pages) < MAX_ROSTER_PAGES
    assert _enrolled(w, "sl", 3) == 0


def test_a_roster_above_the_byte_bound_is_refused(w: World) -> None:
    teacher = _teacher(w, "tbytes")
    page = 900_000  # each page under the one-answer bound, the pages together above theirs
    count = MAX_ROSTER_BYTES // page + 2
    w.acme.members, w.acme.page_size, w.acme.padding = _learners("by", count), 1, page
    synced = _sync(w, teacher)
    assert synced.status_code == 502, synced.text
    assert f"larger than {MAX_ROSTER_BYTES} bytes" in synced.text
    assert len(w.acme.roster_pages) < count
    assert _enrolled(w, "by", count) == 0


def test_a_second_sync_of_the_cohort_meanwhile_is_refused(w: World) -> None:
    teacher = _teacher(w, "tbusy")
    other = _teacher(w, "tbusy2")
    w.acme.members = _learners("bz", 2)
    w.acme.roster_gate.clear()  # the platform holds its answer
    first: list[httpx.Response] = []
    syncing = threading.Thread(target=lambda: first.append(_sync(w, teacher)))
    syncing.start()
    try:
        while not w.acme.roster_pages:  # the first sync is reading the roster
            assert syncing.is_alive()
            threading.Event().wait(0.02)
        second = _sync(w, other)
        assert second.status_code == 409, second.text
        assert second.json()["error"] == "lti_roster_busy"
    finally:
        w.acme.roster_gate.set()
        syncing.join(60)
    assert first[0].status_code == 200, first[0].text
    assert _enrolled(w, "bz", 2) == 2
    assert _sync(w, other).status_code == 200  # finished: the next sync runs
