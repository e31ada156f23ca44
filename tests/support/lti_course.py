"""An LMS course with Forge registered in it, for the LTI tests that go from deep linking
to grade passback (tests/classroom/test_lti.py, test_lti_grades_any_start.py): the
platform emulator and spawn_service started together, the instructor adding a lab, and
the scoreboard's `forge.score.finalized` announced on the bus.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from forge.bus import Publisher
from forge.bus.contracts import ScoreFinalizedV1, publish_event
from forge.config import Settings
from forge.services.common.bus import bus_credentials, bus_streams

from .lti_platform import (
    INSTRUCTOR_ROLE,
    Landing,
    LtiForge,
    LtiPlatformEmulator,
    forge_with_lti,
    lti_platform,
    run_launch,
)

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


@contextmanager
def course_and_forge(tmp: Path, environ: dict[str, str]
                     ) -> Iterator[tuple[LtiPlatformEmulator, LtiForge]]:
    """The emulator and spawn_service whose LTI file registers it (tenant acme)."""
    with lti_platform() as emu:
        regs = {"emulator": emu.registration("acme", "http://placeholder")}
        with forge_with_lti(tmp, environ, regs) as forge:
            emu.forge_jwks_url = forge.url + "/lti/jwks"
            yield emu, forge


def csrf_of(page: str) -> str:
    """The CSRF token of a page's form."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


@dataclass
class AddedLab:
    """The instructor's deep linking: their browser, the launch's answer, the pick page and
    the answer to the pick (the page posting the signed deep link back)."""

    teacher: httpx.Client
    launch: httpx.Response
    pick: httpx.Response
    back: httpx.Response

    def claims(self, emu: LtiPlatformEmulator) -> dict[str, Any]:
        """The signed deep linking response posted back to the LMS, verified."""
        token = re.search(r'name="JWT" value="([^"]+)"', self.back.text)
        assert token is not None, self.back.text
        return emu.verify_from_forge(token.group(1), audience=emu.issuer)

    def assignment_id(self, emu: LtiPlatformEmulator) -> str:
        """The assignment the new activity opens (its one content item's custom field)."""
        (item,) = self.claims(emu)[DL + "content_items"]
        return str(item["custom"]["forge_assignment"])


def add_lab(forge_url: str, emu: LtiPlatformEmulator, attempts: int) -> AddedLab:
    """The course's instructor `tina` adds the netplus lab (open now, for two hours, with
    `attempts` attempts) from the LMS's activity chooser."""
    teacher, answer = run_launch(forge_url, emu.login_url(
        forge_url, "tina", roles=(INSTRUCTOR_ROLE,), message="LtiDeepLinkingRequest"))
    pick = teacher.get("/lti/deep-link")
    now = datetime.now(UTC)
    back = teacher.post("/lti/deep-link", headers={"origin": forge_url}, data={
        "csrf": csrf_of(pick.text), "template_id": "netplus",
        "opens_at": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "closes_at": (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
        "attempts_allowed": str(attempts), "hints_allowed": "yes"})
    return AddedLab(teacher, answer, pick, back)


def start_from_landing(forge_url: str, landing: Landing, assignment_id: str,
                       request_id: str) -> str:
    """A launched learner presses Start on the assignment's landing page (the assignment
    gate); the new lab's scenario id."""
    start = landing.client.post("/spawn", headers={"origin": forge_url}, data={
        "csrf": csrf_of(landing.page), "track": "netplus", "lab": "netplus",
        "assignment_id": assignment_id, "request_id": request_id}, follow_redirects=False)
    assert start.status_code == 303, start.text
    return str(start.headers["location"].rsplit("/", 1)[-1])


async def announce(settings: Settings, done: ScoreFinalizedV1) -> None:
    """Publish `forge.score.finalized` as the scoreboard's bus identity."""
    publisher = Publisher(settings.nats_url, name="test-scoreboard",
                          credentials=bus_credentials(settings, "scoreboard"),
                          streams=bus_streams(settings))
    try:
        await publisher.start(wait=3.0)
        await publish_event(publisher, done, msg_id=f"{done.scenario_id}-finalized")
    finally:
        await publisher.close()
