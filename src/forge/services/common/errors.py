"""The one error body shape of every Forge API: {"error", "message", "details"}.

Every `forge.errors.ForgeError` raised in a route becomes that body with its own status
(and headers) here, once; routes do not translate errors themselves.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from forge.errors import ForgeError
from forge.store.busy import store_busy, store_error_text, store_out_of_room, store_read_only

log = logging.getLogger("forge.errors")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_error",
    429: "rate_limited",
    502: "bad_gateway",
    503: "unavailable",
}


LEARNER_CHALLENGE = 'Bearer realm="forge"'


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response in the shared shape. A 401 carries a challenge (RFC 9110
    requires one; a learner's 401 had none, and some HTTP clients treat that answer as a
    protocol error): the route's own, else `Bearer` (an API key is also taken as a
    bearer token)."""
    body = {"error": code, "message": message, "details": details or []}
    if status == 401 and not any(k.lower() == "www-authenticate" for k in headers or {}):
        headers = {**(headers or {}), "WWW-Authenticate": LEARNER_CHALLENGE}
    return JSONResponse(body, status_code=status, headers=headers)


async def _forge_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ForgeError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


# FastAPI's 400 for a JSON body its parser gave up on (nested deeper than Python's
# recursion limit, or bytes that are not text, its cause): said with the field and which
# of the two, as validation is.
_UNPARSED_BODY = "There was an error parsing the body"


class BodyRefused(StarletteHTTPException):
    """A request body refused while the route reads it (raised from a wrapped `receive`,
    which FastAPI lets through as an HTTP exception): 400 with its code and details."""

    def __init__(self, code: str, message: str, details: list[Any]) -> None:
        super().__init__(400, message)
        self.code = code
        self.details = details


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, BodyRefused):
        return error_response(400, exc.code, str(exc.detail), exc.details)
    if exc.status_code == 400 and exc.detail == _UNPARSED_BODY:
        return _unparsed_body(exc.__cause__)
    if exc.status_code == 404 and exc.detail == _NO_ROUTE:
        return error_response(404, "not_found", "path: no such route on this service",
                              [{"field": "path"}])
    if exc.status_code == 405 and exc.detail == _WRONG_METHOD:
        return _wrong_method(request.method, dict(exc.headers or {}))
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers=headers)


# The router's own 404 and 405 ("Not Found", "Method Not Allowed"): said with the field
# at fault, the path or the method, and for a method which ones the path takes.
_NO_ROUTE, _WRONG_METHOD = "Not Found", "Method Not Allowed"


def _wrong_method(method: str, headers: dict[str, str]) -> JSONResponse:
    allowed = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
    shown = method if method.isascii() and method.isalpha() and len(method) <= 16 else "this"
    message = f"method: {shown} is not allowed on this path"
    if allowed:
        message += f"; use {' or '.join(allowed)}"
    return error_response(405, "method_not_allowed", message,
                          [{"field": "method", "allowed": allowed}], headers=headers or None)


def _unparsed_body(cause: BaseException | None) -> JSONResponse:
    """The 400 of a JSON body the parser gave up on, saying which of its two reasons:
    "nested too deeply, or not UTF-8 text" left the client to guess which to fix."""
    if isinstance(cause, RecursionError):
        problem = "nested too deeply"
        message = ("body: JSON nested too deeply (arrays or objects inside one another, "
                   "too many levels to read)")
    elif isinstance(cause, UnicodeDecodeError):
        problem = "not UTF-8 text"
        message = f"body: not UTF-8 text (byte {cause.start})"
    elif isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        limit = sys.get_int_max_str_digits()
        problem = "number too long"
        message = f"body: a number in the JSON has more than {limit} digits"
    else:
        problem = "not readable as JSON"
        message = "body: not readable as JSON"
    return error_response(400, "invalid_body", message, [{"field": "body", "problem": problem}])


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lowercased, without its parameters ("" for
    none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_as_json(content_type: str | None) -> bool:
    """Whether a body with this Content-Type may be read as JSON: application/json or
    application/…+json, or none given (a route may call ``request.json()`` itself; FastAPI's
    body models read none without a type, see ``_validation_error``)."""
    if content_type is None:
        return True
    kind = media_type(content_type)
    return kind == "application/json" or (kind.startswith("application/")
                                           and kind.endswith("+json"))


# Where FastAPI found a parameter: the first part of its `loc`, not part of the name. A
# query or path parameter was named `query.limit`, `path.scenario_id`, while a body field,
# the same parameter refused by a route's own check (`limit: a whole number from 1 to 500`)
# and a repeated or unknown one were named `limit`: a client matching `details[].field` to
# what it sent found two names for one parameter.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def _field(loc: Sequence[object]) -> str:
    """The field a validation error names: its location's parts, without where it was."""
    parts = list(loc[1:] if loc and loc[0] in _LOCATIONS else loc)
    return ".".join(str(p) for p in parts if p != "body") or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:  # the body is not JSON: say where, not "invalid request: 9"
        loc = [p for p in broken.get("loc", ()) if p != "body"]
        why = str((broken.get("ctx") or {}).get("error", "not valid JSON"))[:80]
        at = f" at character {loc[0]}" if loc else ""
        return error_response(400, "invalid_body", f"body: not valid JSON{at} ({why})",
                              [{"field": "body", "problem": "not valid JSON"}])
    content_type = request.headers.get("content-type")
    if any(tuple(e.get("loc", ())) == ("body",)
           and (not read_as_json(content_type)
                or (content_type is None and e.get("type") != "missing"))
           for e in errors):
        # FastAPI reads a body model only from a JSON type: one sent without a type (or
        # with another) is 415, not 422 "Input should be a valid dictionary" (probe AT);
        # no body at all stays 422 "body: Field required".
        return error_response(415, "unsupported_media_type",
                              "Content-Type: send the body as application/json",
                              [{"field": "content-type"}])
    details = [{"field": _field(err.get("loc", ())), "problem": err["msg"]} for err in errors]
    fields = ", ".join(d["field"] for d in details)
    return error_response(422, "validation_error", f"invalid request: {fields}", details)


async def _client_gone(_: Request, exc: Exception) -> JSONResponse:
    """The client went away (or was cut off, see request_clock) while the handler read
    its body: nothing to report, and the answer reaches nobody."""
    log.info("client disconnected before its request was read")
    return error_response(400, "client_disconnected", "the client went away")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    # The server closes the connection after an unhandled error: say so, so a keep-alive
    # client does not send its next request into a reset.
    return error_response(500, "internal_error", "internal error; see the service log",
                          headers={"Connection": "close"})


STORE_RETRY_AFTER_S = 5


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """A store that is busy, unreachable, out of room (a full disk) or read-only for now:
    503 with Retry-After, as the other outages are, and nothing of the request kept (its
    transaction rolled back); any other store error is a fault (500)."""
    if not isinstance(exc, DBAPIError) or not (store_busy(exc) or store_out_of_room(exc)
                                               or store_read_only(exc)):
        return await _unexpected(request, exc)
    log.error("state store unavailable: %s", store_error_text(exc))
    return error_response(503, "store_unavailable", "the state store cannot be used just "
                          "now; try again shortly",
                          headers={"Retry-After": str(STORE_RETRY_AFTER_S)})


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the shared error shape; no stack trace reaches a caller."""
    app.add_exception_handler(ForgeError, _forge_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(DBAPIError, _store_error)
    app.add_exception_handler(Exception, _unexpected)
