"""HTML rendering: Jinja2 templates with autoescaping, and safe markdown for task texts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from forge.services.spawn.web.security import security_headers

# Pages and static assets are package data, found through importlib.resources: they ship in
# the wheel and are read the same way from a checkout or an installed copy.
WEB_PACKAGE = __package__ or "forge.services.spawn.web"
PAGES_DIR = "pages"
STATIC_DIR = "static"

# CommonMark with raw HTML disabled: any tag in a task text is shown as text, and
# markdown-it refuses javascript:/data: links itself.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def render_markdown(text: str) -> Markup:
    """Learner-facing task text as HTML; raw HTML in the source is escaped, never passed."""
    return Markup(_markdown.render(text))  # noqa: S704 - html disabled above


def _when(value: str | datetime | None) -> str:
    if value is None:
        return "-"
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _detail(value: object) -> str:
    """A readiness detail as one short line (nested details summarised, lists left out)."""
    if isinstance(value, dict):
        parts = [f"{key} {_detail(item)}" if not isinstance(item, dict)
                 else f"{key} ({_detail(item)})"
                 for key, item in value.items() if not isinstance(item, list)]
        return "; ".join(parts)[:400]
    return str(value)[:400]


def _build_env() -> Environment:
    env = Environment(
        loader=PackageLoader(WEB_PACKAGE, PAGES_DIR),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["detail"] = _detail
    return env


_env = _build_env()


def page(name: str, context: dict[str, Any], *, status: int = 200,
         terminal: bool = False) -> HTMLResponse:
    """Render template `name` with the site's security headers."""
    body = _env.get_template(name).render(**context)
    return HTMLResponse(body, status_code=status, headers=security_headers(terminal))


def error_page(status: int, message: str, *, back: str = "/") -> HTMLResponse:
    """A plain error page (the message is escaped like everything else)."""
    return page("error.html", {"title": f"Error {status}", "status": status,
                               "message": message, "back": back}, status=status)
