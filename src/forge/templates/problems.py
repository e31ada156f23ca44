"""Template problems: one message tied to one path in the document."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a template, at a dotted path such as `spec.assets.containers[1]`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class TemplateError(ValueError):
    """A template is invalid; `problems` lists every problem found, each with its path."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None, *,
                 cross_checked: bool = True) -> None:
        self.problems = tuple(problems)
        self.source = source
        # False when schema problems kept the cross-references (subnets, hosts, checks,
        # variables) from being checked: fixing `problems` may show more.
        self.cross_checked = cross_checked
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{head}invalid template ({len(self.problems)} problem(s)):\n{lines}")


class UnreadableTemplate(TemplateError):
    """The input could not be read or parsed safely at all (not a regular file, too large,
    nested too deep): a usage error, not a template with problems."""

    @property
    def reason(self) -> str:
        """One line: the file and why it was refused."""
        text = "; ".join(str(p) for p in self.problems)
        return f"{self.source}: {text}" if self.source and self.source not in text else text


class UnknownTemplate(LookupError):
    """A template name that is not in the registry's allowlist of loaded names."""


def format_loc(loc: Iterable[int | str]) -> str:
    """Render a pydantic location tuple as `spec.assets.containers[1].networks[0]`."""
    out = ""
    for part in loc:
        if part == "[key]":
            out += " (key)"
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_FIELD_ALIASES = {"success_criteria": "successCriteria", "api_version": "apiVersion"}


def problems_from_validation(err: ValidationError) -> list[Problem]:
    """Turn pydantic errors into problems that use the DSL's own field names."""
    found: list[Problem] = []
    errors = err.errors(include_url=False)
    inner = [tuple(e["loc"]) for e in errors]
    for item in errors:
        here = tuple(item["loc"])
        if item["type"] == "too_short" and any(
                len(o) > len(here) and o[:len(here)] == here for o in inner):
            # pydantic counts the items that validated: a list whose one item is wrong
            # is not also "at least 1 item, not 0" (that item's own error says what).
            continue
        loc = [
            _FIELD_ALIASES.get(p, p) if isinstance(p, str) else p
            for p in item["loc"]
            # pydantic adds validator/branch names to the path; keep what the author wrote.
            if not (isinstance(p, str) and p.startswith("function-"))
        ]
        msg = str(item["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        found.append(Problem(format_loc(loc), msg))
    return found
