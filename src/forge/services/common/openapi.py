"""Honest OpenAPI documents: every status a route can return, with the error body schema.

Routes name their own error statuses with ``errors(...)`` in their decorator. On top of
that, ``install_openapi`` documents what the shared layers can answer on *every* route:
413 (the body limit, before any parsing), 400 (a body that is not JSON, for routes that
take one) and 422 (validation, for routes with parameters or a body, and for every `/v1`
route, which refuses a query parameter it does not take: ``known_query``), all with the one
error body, ``ErrorBody``, that every failure uses.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from forge.services.common.known_query import API_PREFIX

REF = "#/components/schemas/ErrorBody"
TEXTS = {
    400: "The request is malformed (a field names the problem)",
    401: "Credentials are missing or not accepted",
    403: "Authenticated, but not allowed (plan, owner, billing mode)",
    404: "No such resource visible to this caller",
    409: "The resource's state does not allow this now",
    413: "The request body is larger than the configured limit",
    415: "The body is not of the media type this route reads (Content-Type)",
    422: "A parameter or the body failed validation",
    429: "A rate or concurrency quota is exhausted (see Retry-After)",
    502: "A service this one depends on answered wrongly",
    503: "A dependency (the event bus, the store) is unavailable; retry",
}


class ErrorBody(BaseModel):
    """The shape of every error answer."""

    error: str = Field(description="A stable, machine-readable code.")
    message: str = Field(description="What went wrong, naming the field when one did.")
    details: list[dict[str, Any]] = Field(default_factory=list)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can fail with these statuses."""
    return {code: {"model": ErrorBody, "description": TEXTS[code]} for code in codes}


def _error_response(code: int) -> dict[str, Any]:
    return {"description": TEXTS[code],
            "content": {"application/json": {"schema": {"$ref": REF}}}}


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that adds the shared error answers."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description=app.description)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema(ref_template=REF)
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
                if takes_input or "422" in responses or path.startswith(API_PREFIX):
                    responses["422"] = _error_response(422)
                if operation.get("requestBody"):
                    responses.setdefault("400", _error_response(400))
                responses.setdefault("413", _error_response(413))
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]


def document_enums(app: FastAPI, enums: dict[tuple[str, str], list[str]]) -> None:
    """Publish the allowed values of free-string fields known only at start (tracks from
    the loaded templates, plans from the plans file) as enums of (schema, field)."""
    inner = app.openapi

    def build() -> dict[str, Any]:
        schema = inner()
        components = schema.get("components", {}).get("schemas", {})
        for (model, name), values in enums.items():
            prop = components.get(model, {}).get("properties", {}).get(name)
            if prop is not None:
                prop["enum"] = sorted(values)
        return schema

    app.openapi = build  # type: ignore[method-assign]
