"""Errors as people read them: HTML pages for browsers, JSON for the API.

A browser asking for a page (Accept: text/html, any path outside `/v1/` except the access
link) gets an HTML page: a 401 on a page it tried to open redirects to `/signin?next=<path>`,
an unknown page is a 404 page, an access-link problem says so plainly with a "sign in
instead" link. Messages shown to learners never carry internal names or token jargon: known
codes have their own wording, a service's refusal loses its service prefix, and anything
still holding a jargon word is replaced by a plain sentence. API callers keep the JSON body.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from forge.errors import ForgeError
from forge.services.common.errors import error_response as api_error
from forge.services.spawn.web.render import clock, error_page, page
from forge.services.spawn.web.viewer import Viewer, viewer

Handler = Callable[[Request, Any], Response | Awaitable[Response]]
MAX_NEXT = 512
_LAB = r"^/lab/scn-[0-9a-f]{16}"
_LAB_LINK = re.compile(_LAB + r"\Z")
# Words that mean nothing to a learner (or name our internals); never shown on a page.
JARGON = ("jws", "jwt", "acc token", "orchestrator", "scoreboard", "signature does not verify",
          "x-receipt-token", "hmac", "jti", "compact", "spawn_service", "backend", "csrf")
GENERIC = "Something went wrong with this request. Try again, or go back and start over."
# Refusals a different plan would lift: their page links to /plans.
PLAN_CODES = frozenset({"track_not_in_plan", "tier_not_in_plan", "entitlement_not_found"})
SIGNIN_CODES = frozenset({"credentials_required", "invalid_session", "session_expired",
                          "signed_out"})
_LAB_PAGE = re.compile(_LAB + r"(?=/|\Z)")  # a lab page, or a form posted from it
# A result file or the credential (offered on the lab's page), a terminal recording (on its
# result page): a download, not a page to come back to after sign-in.
_LAB_DOWNLOAD = re.compile(r"^(/lab/scn-[0-9a-f]{16})/(?:artifacts/[^/]+|credential)\Z")
_RECORDING = re.compile(r"^(/lab/scn-[0-9a-f]{16})/recordings/[^/]+\Z")
_RECEIPT = ("This receipt cannot be used: it has expired or it was changed. Sign in with your "
            "API key, or choose a plan.")
_ACCESS = ("This lab link cannot be used: it has expired, it was already used, it was "
           "changed, or the sign-in key that started the lab was replaced. Sign in instead "
           "to reach your labs.")
_ANOTHER = ("This browser is signed in as another learner. Sign out first, then open the lab "
            "link again: it is not used up.")
_SIGNED_OUT = ("You are not signed in, or your session ended. Sign in to go on; your labs "
               "keep running.")
# A lab link that leads nowhere (mistyped, cut short in an email, another account's): said in
# the page's own words ("lab", "Labs"), not the store's ("scenario", "scenario_id").
_NO_LAB = ("There is no lab of yours at this address: the link may be wrong, or the lab "
           "belongs to another account. Your labs are listed on the Labs page.")
_BAD_LAB_LINK = ("This is not a lab's address: a lab's link ends in scn- and 16 letters "
                 "and digits. Check that the whole link was copied, or find your lab on the "
                 "Labs page.")
_WORDS = {
    "invalid_receipt": _RECEIPT,
    "receipt_tenant_mismatch": "This receipt belongs to another account.",
    "receipt_subject_mismatch": "This receipt belongs to another account.",
    "backend_unreachable": "Part of the platform did not answer. Try again in a minute.",
    "lab_node_unreachable": "The machine running your lab did not answer. Try again in a "
                            "minute.",
    "invalid_api_key": "That sign-in key is not known, or it was revoked. Check that it was "
                       "copied whole, or choose a plan to get one.",
    "bus_unavailable": "The platform is busy and could not take this request; nothing was "
                       "started or charged. Try again in a minute.",
    "not_running": "This lab is not running now (it is starting, being graded or over), so "
                   "this cannot be done; reload its page to see where it stands.",
}


@dataclass(frozen=True)
class PageError:
    """What an error page shows: heading, plain message, and links onwards."""

    status: int
    heading: str
    message: str
    back: str
    signin: str | None = None
    running_lab: str | None = None
    plans: bool = False


def safe_next(value: str | None, default: str = "/tracks") -> str:
    """`value` if it is a path on this site (`/...`, no scheme, host, `//`, backslash or
    control character, also once percent-decoded), else `default`: a sign-in never sends
    the browser to another site."""
    if not value or len(value) > MAX_NEXT:
        return default
    for form in (value, unquote(value)):
        if not form.startswith("/") or form.startswith("//") or "\\" in form:
            return default
        if any(ord(c) < 0x21 or ord(c) == 0x7f for c in form):
            return default
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return default
    return value


def signin_url(next_path: str) -> str:
    """The sign-in page that returns to `next_path` afterwards."""
    return "/signin?next=" + quote(safe_next(next_path), safe="/")


def has_jargon(text: str) -> bool:
    """True when `text` holds a word a learner should never see."""
    lower = text.lower()
    return any(word in lower for word in JARGON)


def _running_lab(exc: ForgeError) -> str | None:
    """The page of the caller's running lab a quota refusal names, if any."""
    for item in exc.details:
        link = item.get("running_lab") if isinstance(item, dict) else None
        if isinstance(link, str) and _LAB_LINK.match(link):
            return link
    return None


def _quota_words(exc: ForgeError) -> str:
    detail = exc.details[0] if exc.details and isinstance(exc.details[0], dict) else {}
    wait = (exc.headers or {}).get("Retry-After", "")
    minutes = f" A place frees in about {max(1, round(int(wait) / 60))} min." \
        if wait.isascii() and wait.isdigit() else ""
    if detail.get("kind") == "rate":
        return "You started labs too quickly. Wait a minute, then try again."
    if detail.get("scope") == "tenant":
        return "All the labs your organisation may run at once are in use." + minutes
    limit = detail.get("limit")
    count = f"{limit} lab{'s' if limit != 1 else ''}" if isinstance(limit, int) else "labs"
    return (f"Your plan lets you run {count} at once, and you already do. Finish or submit "
            f"a running lab to start another.{minutes}")


def human_message(exc: ForgeError) -> str:
    """A learner-facing sentence for `exc`, free of internal names and token jargon."""
    if exc.code == "quota_exceeded":
        return _quota_words(exc)
    if exc.code == "assignment_refused":
        return _assignment_words(exc)
    if exc.code in _WORDS:
        return _WORDS[exc.code]
    if exc.status == 401 and exc.code in SIGNIN_CODES and exc.code != "signed_out":
        return _SIGNED_OUT  # a session cookie that ran out ("signed_out" says it itself)
    if exc.code.startswith("token_"):
        return _RECEIPT
    message = exc.message
    if exc.code == "hint_out_of_order":  # "hint: reveal hint 1 first (…)": the field's name
        text = message.removeprefix("hint: ")
        return text[:1].upper() + text[1:] + "."
    service = getattr(exc, "service", None)
    if exc.code == "not_found" and message.removeprefix(f"{service}: ") == "scenario not found":
        return _NO_LAB
    if exc.code == "validation_error" and any(
            isinstance(d, dict) and d.get("field") == "scenario_id" for d in exc.details):
        return _BAD_LAB_LINK
    if exc.code == "validation_error":  # "invalid request: name" says which, not why
        message = _field_problems(exc) or message
    if isinstance(service, str):
        if exc.status >= 500:
            return _WORDS["backend_unreachable"]
        message = message.removeprefix(service + ": ")
    if has_jargon(message):
        return GENERIC
    return message


def _assignment_words(exc: ForgeError) -> str:
    """A start the class's assignment refused, in words from its facts (the policy's own
    reasons name the assignment's id and read "lab: assignment asg-… opens at …Z")."""
    facts = next((d for d in exc.details if isinstance(d, dict) and "opens_at" in d), {})
    try:
        opens, closes = (datetime.fromisoformat(str(facts[k])) for k in ("opens_at",
                                                                          "closes_at"))
        allowed, used = int(facts["attempts_allowed"]), int(facts["attempts_used"])
    except (KeyError, TypeError, ValueError):
        return exc.message.removeprefix("lab: ")
    now, said = datetime.now(UTC), []
    if now < opens:
        said.append(f"it opens on {clock(opens)} UTC")
    elif now >= closes:
        said.append(f"it closed on {clock(closes)} UTC")
    if used >= allowed:
        said.append(f"you have used all {allowed} attempt{'' if allowed == 1 else 's'} "
                    "it allows")
    if not said:
        return exc.message.removeprefix("lab: ")
    return ("This lab is assigned to your class, so it starts only as the assignment "
            "allows: " + ", and ".join(said) + ".")


def _field_problems(exc: ForgeError) -> str | None:
    """"name: 1-120 characters, …" for each field the error's details explain, or None."""
    said = [f"{d['field']}: {d['problem']}" for d in exc.details
            if isinstance(d, dict) and isinstance(d.get("field"), str)
            and isinstance(d.get("problem"), str) and d["field"]]
    return "; ".join(said)[:500] if said else None


def wants_page(request: Request) -> bool:
    """A browser asking for a page (or following an access link), not an API call."""
    path = request.url.path
    if path.startswith("/static/") or (path.startswith("/v1/")
                                       and not path.startswith("/v1/access/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def error_response(request: Request, err: PageError, headers: dict[str, str] | None = None,
                   who: Viewer | None = None) -> Response:
    """The HTML error page for `err` (Retry-After and similar headers kept); `who` is the
    signed-in learner the header shows."""
    response = page("error.html", {"title": err.heading, "status": err.status,
                                   "viewer": who,
                                   "message": err.message, "back": err.back,
                                   "signin": err.signin, "running_lab": err.running_lab,
                                   "plans": err.plans},
                    status=err.status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def asks_for_json(request: Request) -> bool:
    """A client that asks for JSON, not HTML (``Accept: application/json``): a script, or
    an API client posting a page's form."""
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def page_for(request: Request, exc: ForgeError, back: str = "/") -> Response:
    """A ForgeError as a browser sees it: sign-in redirect for a GET page, else a page; a
    client asking for JSON gets the API's error body (code, message naming the field,
    details), not a page it must scrape for what was wrong."""
    if asks_for_json(request):
        return api_error(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if exc.status == 401 and request.method == "GET" and exc.code in SIGNIN_CODES:
        return RedirectResponse(signin_url(_after_signin(request)), status_code=303)
    if request.url.path.startswith("/v1/access/"):
        scenario = request.url.path.rsplit("/", 1)[-1]
        return error_response(request, PageError(
            exc.status, "This link cannot be used", _ANOTHER if exc.status == 409 else
            _ACCESS if exc.status != 404 else
            "This lab link does not lead to any of your labs. Sign in instead to reach them.",
            "/", signin_url(f"/lab/{scenario}")))
    heading = {401: "Please sign in", 403: "Not allowed", 404: "Not found",
               409: "Not possible right now", 422: "Please check what you sent",
               429: "Too many labs"}.get(
        exc.status, "Something went wrong")
    signin = signin_url(return_to(request)) if exc.status == 401 and \
        request.url.path != "/signin" else None
    return error_response(request, PageError(exc.status, heading, human_message(exc), back,
                                             signin, _running_lab(exc),
                                             exc.code in PLAN_CODES), exc.headers,
                          await viewer(request))


def _after_signin(request: Request) -> str:
    """Where a signed-out GET leads after sign-in: the page itself, but for a download (a
    result file, the credential, a recording) the lab's page that offers it: sent to the
    file itself, the browser saved it and stayed on the sign-in form, as if signing in had
    failed."""
    download = _LAB_DOWNLOAD.match(request.url.path)
    if download:
        return download.group(1)
    recording = _RECORDING.match(request.url.path)
    return recording.group(1) + "/result" if recording else _here(request)


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def return_to(request: Request) -> str:
    """Where a sign-in should lead back to after this request was refused: the page itself
    for a GET; for a form posted from a lab page (a check, a hint, Submit), that lab page;
    else the learner's labs (a POST's own address is no page)."""
    if request.method == "GET":
        return _here(request)
    lab = _LAB_PAGE.match(request.url.path)
    return lab.group(0) if lab else "/tracks"


def form_page(path: str) -> str:
    """Where a form's own address, opened as a page, leads: the lab page a lab's form (Submit,
    a check, a hint, Extend) is posted from, else the start. A no-script answer to such a
    form is shown at that address; opened again from the history, a bookmark or another tab
    it said "Something went wrong ... Try again", which could never work."""
    lab = _LAB_PAGE.match(path)
    return lab.group(0) if lab else "/"


async def _answer(result: Response | Awaitable[Response]) -> Response:
    return await result if inspect.isawaitable(result) else result


def install_error_pages(app: FastAPI) -> None:
    """Answer browsers with pages; everyone else keeps the app's JSON error handlers."""
    json_forge: Handler = app.exception_handlers[ForgeError]
    json_http: Handler = app.exception_handlers[StarletteHTTPException]
    json_validation: Handler = app.exception_handlers[RequestValidationError]

    async def forge_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ForgeError) and wants_page(request):
            return await page_for(request, exc)
        return await _answer(json_forge(request, exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, StarletteHTTPException) and wants_page(request):
            who = await viewer(request)  # a signed-in learner is not offered "Sign in"
            if exc.status_code == 404:
                return error_response(request, PageError(
                    404, "Page not found", "There is no page at this address.", "/"), who=who)
            if exc.status_code == 405 and request.method == "GET":
                return RedirectResponse(form_page(request.url.path), status_code=303)
            return error_response(request, PageError(
                exc.status_code, "Something went wrong", GENERIC, "/"), who=who)
        return await _answer(json_http(request, exc))

    async def validation_error(request: Request, exc: Exception) -> Response:
        answered = await _answer(json_validation(request, exc))
        if not wants_page(request) or not isinstance(answered, JSONResponse):
            return answered
        # A cut-off lab link (no token) in a browser: its page, not the API's JSON body.
        body = json.loads(bytes(answered.body))
        return await page_for(request, ForgeError(str(body["error"]), answered.status_code,
                                                  str(body["message"]), body["details"]))

    app.add_exception_handler(ForgeError, forge_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def as_page(back: str, request: Request | None = None
             ) -> Callable[[Callable[[], Awaitable[Response]]], Awaitable[Response]]:
    """Run a page handler; a ForgeError becomes a page for people (with `request`: in plain
    words, a sign-in redirect for a signed-out GET; without: the message as it is)."""
    async def run(fn: Callable[[], Awaitable[Response]]) -> Response:
        try:
            return await fn()
        except ForgeError as exc:  # ours, or a service's refusal (BackendError)
            if request is None:
                return error_page(exc.status, exc.message, back=back)
            return await page_for(request, exc, back)
    return run
