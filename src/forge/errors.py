"""The one error type of Forge: a stable code, the HTTP status it maps to, a message.

A leaf module (imports nothing from forge) so every layer may raise it. The services map it
to an HTTP answer once (`forge.services.common.errors`); the CLI prints its message. The
message is for the caller: it names the field or the cause and never carries a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ForgeError(Exception):
    """An error meant for the caller: `code` (stable snake_case), `status` (HTTP), `message`.

    `details` is a list of JSON-able items (e.g. `{"field": "track"}`); `headers` are extra
    HTTP headers of the answer (Retry-After, WWW-Authenticate).
    """

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        details: list[Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details: list[Any] = list(details or [])
        self.headers: dict[str, str] | None = dict(headers) if headers else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.status}, {self.message!r})"


def invalid_field(field: str, problem: str) -> ForgeError:
    """The 422 of a request field that is malformed or out of range, naming it: the message
    `<field>: <problem>`, and details `[{"field", "problem"}]` for programs."""
    return ForgeError("validation_error", 422, f"{field}: {problem}",
                      [{"field": field, "problem": problem}])
