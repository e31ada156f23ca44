"""The line /teach shows after one of its forms, carried across the redirect that ends
every form (so a reload shows the page again and never sends the form a second time: no
second invite link, no "not a learner" error for a learner just removed).

It travels in a short-lived cookie sealed for the instructor who sent the form
(``sealed_cookie``): nobody else's page shows it, and a changed cookie shows nothing. The
page that shows it clears it, so a new invite link is shown once.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from forge.classroom.cohorts import COHORT_ID_RE, Manager
from forge.config.settings import Settings
from forge.services.spawn.web.sealed_cookie import seal, unseal
from forge.services.spawn.web.security import clear_cookie, set_cookie

TEACH_COOKIE = "forge_teach_notice"
NOTICE_TTL_S = 120
_PURPOSE = b"forge-teach-notice\x00"


def _aad(who: Manager) -> bytes:
    return f"{who.tenant_id}\x00{who.subject}".encode()


def page_after(form: dict[str, str]) -> str | None:
    """The ``after`` of the /teach page a form was sent from (the page's own query value),
    when it is a well-formed cohort id (the page checks it is theirs); None: the first."""
    after = form.get("after", "")
    return after if COHORT_ID_RE.fullmatch(after) else None


def teach_page_of(form: dict[str, str]) -> str:
    """/teach at the page a form was sent from: an instructor with many classes acting on
    one of a later page is not sent back to the first (``page_after``)."""
    after = page_after(form)
    return "/teach" if after is None else f"/teach?after={after}"


def back_to_teach(request: Request, settings: Settings, who: Manager, location: str,
                  notice: str | None = None, invite: dict[str, str] | None = None) -> Response:
    """A 303 to ``location`` (a /teach page) that shows ``notice`` (and a new ``invite``
    link) there once."""
    response = RedirectResponse(location, status_code=303)
    body = {"notice": notice, "invite": invite, "until": int(time.time()) + NOTICE_TTL_S}
    set_cookie(response, request, TEACH_COOKIE,
               seal(settings, _PURPOSE, _aad(who), json.dumps(body).encode()), NOTICE_TTL_S)
    return response


def take_notice(request: Request, settings: Settings,
                who: Manager) -> tuple[str | None, dict[str, str] | None]:
    """The notice and invite waiting for ``who`` (``back_to_teach``); (None, None) when
    there is none, it is another person's, changed or older than ``NOTICE_TTL_S``."""
    opened = unseal(settings, _PURPOSE, _aad(who), request.cookies.get(TEACH_COOKIE, ""))
    if opened is None:
        return None, None
    try:
        body: Any = json.loads(opened)
    except ValueError:
        return None, None
    if not isinstance(body, dict) or not isinstance(body.get("until"), int) \
            or body["until"] < time.time():
        return None, None
    notice, invite = body.get("notice"), body.get("invite")
    if not isinstance(notice, str):
        notice = None
    if not (isinstance(invite, dict) and all(isinstance(invite.get(k), str)
                                             for k in ("cohort_id", "url"))):
        invite = None
    return notice, invite


def forget_notice(request: Request, response: Response) -> None:
    """Clear the notice cookie once its page is made (shown once)."""
    if TEACH_COOKIE in request.cookies:
        clear_cookie(response, request, TEACH_COOKIE)
