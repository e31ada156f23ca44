"""HTML rendering: Jinja2 templates with autoescaping, and safe markdown for task texts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from forge.services.spawn.web.security import security_headers

# Pages and static assets are package data, found through importlib.resources: they ship in
# the wheel and are read the same way from a checkout or an installed copy.
WEB_PACKAGE = __package__ or "forge.services.spawn.web"
PAGES_DIR = "pages"
STATIC_DIR = "static"

# CommonMark with raw HTML disabled: any tag in a task text is shown as text, and
# markdown-it refuses javascript:/data: links itself.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def render_markdown(text: str, top_heading: int = 1) -> Markup:
    """Learner-facing task text as HTML; raw HTML in the source is escaped, never passed.

    `top_heading` is the level a `#` heading takes (at most h6), for a text shown under a
    page's own headings: the lab page's task text, under its h1 and the Task h2, starts at
    h3, so a screen reader's list of headings nests it instead of meeting a second h1. Each
    heading keeps its source level as a class (`md-h1`, `md-h2`) for its look."""
    tokens = _markdown.parse(text)
    for token in tokens:
        if top_heading > 1 and token.type in ("heading_open", "heading_close"):
            level = int(token.tag[1])
            token.tag = f"h{min(6, level + top_heading - 1)}"
            if token.type == "heading_open":
                token.attrSet("class", f"md-h{level}")
    return Markup(_markdown.renderer.render(tokens, _markdown.options, {}))  # noqa: S704


def _moment(value: str | datetime) -> datetime | None:
    """``value`` as an aware UTC datetime (naive read as UTC); None when unreadable."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _when(value: str | datetime | None) -> str:
    if value is None:
        return "-"
    moment = _moment(value)
    return str(value) if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _utc_time(value: str | datetime | None, style: str = "iso") -> Markup | str:
    """A UTC time as ``<time class="utc">``, which ``static/js/local_time.js`` shows in the
    browser's own zone; its text (the ISO form, or ``when``'s) stays for a browser in UTC
    or without the script."""
    moment = None if value is None else _moment(value)
    if value is None or moment is None:
        return _when(value)
    iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = _when(moment) if style == "when" else (value if isinstance(value, str) else iso)
    return Markup('<time class="utc" datetime="{}">{}</time>').format(iso, text)


def clock(moment: datetime) -> str:
    """``moment`` (UTC) as a page writes a time to the minute, "2026-12-07 09:00", with its
    seconds when it is not on a whole minute ("09:00:30"): a window opening at 09:00:00
    and closing at 09:00:30 (set through the API) read "09:00 … 09:00"."""
    utc = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M" + (":%S" if utc.second else ""))


_UTC_IN_TEXT = re.compile(r"\b(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}(?::\d{2})?) UTC\b")


def _utc_text(text: str) -> Markup:
    """``text``, escaped, with each "2026-12-07 09:00 UTC" (or "09:00:30 UTC", as `clock`
    writes it) in it a ``<time class="utc">``: ``static/js/local_time.js`` shows it in the
    reader's zone; without the script it says UTC as written."""
    return Markup(_UTC_IN_TEXT.sub(  # noqa: S704 (its input is escaped; the match is digits)
        lambda m: f'<time class="utc" datetime="{m[1]}T{(m[2] + ":00")[:8]}Z">{m[0]}</time>',
        str(escape(text))))


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
    env.filters["utc_time"] = _utc_time
    env.filters["utc_text"] = _utc_text
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
