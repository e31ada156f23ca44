"""Per-scenario random values (`spec.variables`) and their substitution as `{{ vars.NAME }}`.

Values make one learner's answer wrong in another learner's lab. They are generated with
`secrets` (or derived deterministically from a secret per-scenario seed with HMAC-SHA256,
so a lab can be re-rendered from its stored seed), and only ever contain letters and
digits, so substituting them into commands, regexes or files cannot inject syntax.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
import secrets
import string
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from forge.templates.problems import Problem, TemplateError, problems_from_validation

if TYPE_CHECKING:
    from forge.templates.dsl_models import ScenarioTemplate, Variable

REFERENCE_RE = re.compile(r"\{\{\s*vars\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_HEX_ALPHABET = "0123456789abcdef"

# Where `{{ vars.NAME }}` may appear (paths as produced by `_walk`).
_RENDERABLE = tuple(
    re.compile(p)
    for p in (
        r"^spec\.description$",
        r"^spec\.assets\.containers\[\d+\]\.command\[\d+\]$",
        r"^spec\.assets\.containers\[\d+\]\.ready_ports\[\d+\]$",
        r"^spec\.assets\.containers\[\d+\]\.environment\.[A-Za-z_][A-Za-z0-9_]*$",
        r"^spec\.assets\.containers\[\d+\]\.files\[\d+\]\.content$",
        r"^spec\.successCriteria\[\d+\]\.checks\[\d+\]\.stdin$",
        r"^spec\.successCriteria\[\d+\]\.checks\[\d+\]\.expect\."
        r"(stdout_contains|stdout_regex|stderr_contains)$",
    )
)


def _walk(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def _renderable(path: str) -> bool:
    return any(p.match(path) for p in _RENDERABLE)


# A template's references, found once per template object: every model of a template is
# frozen (tuples, read-only mappings), so they cannot change. Each lab's render and its lab
# spec asked for the registry template's references again (two walks of its whole
# document on the orchestrator's event loop). Keyed by id, dropped when the template is.
_REFERENCES: dict[int, tuple[weakref.ref[ScenarioTemplate], tuple[tuple[str, str], ...]]] = {}


def _references(t: ScenarioTemplate) -> tuple[tuple[str, str], ...]:
    key = id(t)
    known = _REFERENCES.get(key)
    if known is not None and known[0]() is t:
        return known[1]
    refs = tuple((path, m.group(1)) for path, text in _walk(t.to_document(), "")
                 if "{{" in text  # every reference starts so; most strings have none
                 for m in REFERENCE_RE.finditer(text))
    _REFERENCES[key] = (weakref.ref(t, functools.partial(_forget, key)), refs)
    return refs


def _forget(key: int, ref: weakref.ref[ScenarioTemplate]) -> None:
    """Drop a collected template's entry (not a newer template's under a reused id)."""
    known = _REFERENCES.get(key)
    if known is not None and known[0] is ref:
        del _REFERENCES[key]


def referenced_variables(t: ScenarioTemplate) -> Iterator[tuple[str, str]]:
    """Yield (path, name) for every `{{ vars.NAME }}` reference in the template."""
    yield from _references(t)


_CHECK_COMMAND = re.compile(r"^spec\.successCriteria\[\d+\]\.checks\[\d+\]\.command\[\d+\]\Z")


def misplaced_references(t: ScenarioTemplate) -> list[Problem]:
    """References in fields that are never substituted (names, paths, addresses, …), and
    in check commands, whose argv any process may read: expected values go on stdin."""
    out = []
    for path, text in _walk(t.to_document(), ""):
        if not REFERENCE_RE.search(text) or _renderable(path):
            continue
        if _CHECK_COMMAND.match(path):
            out.append(Problem(path, "a check's command must not contain variables (a "
                               "process's argv is readable); hand expected values to the "
                               "check on its stdin"))
        else:
            out.append(Problem(path, "variables may only be used in description, service "
                               "commands, environment values, file contents, check stdin "
                               "and check expectations"))
    return out


_SERVICE_COMMAND = re.compile(r"^spec\.assets\.containers\[\d+\]\.command\[\d+\]\Z")


def exposed_references(t: ScenarioTemplate) -> list[Problem]:
    """Advice, not an error: per-scenario values in a host's service command, which every
    local user of the machine reads in /proc/PID/cmdline unless /proc has hidepid. A
    value the learner must find belongs in the host's environment instead."""
    return [Problem(path, f'"{{{{ vars.{name} }}}}" is an argument of the service: '
                          "local users of the machine can read it where /proc lacks hidepid; "
                          "if the learner must find it, pass it in environment and read it "
                          "there")
            for path, name in referenced_variables(t) if _SERVICE_COMMAND.match(path)]


# `{{` then `var`/`vars`: what an author meant as a reference. Whatever of it is not a
# whole `{{ vars.NAME }}` (`{{ var.port }}`, `{{ vars.port }`, `{{ vars.port | int }}`)
# is seeded as written.
_NEAR_MISS_RE = re.compile(r"\{\{\s*vars?\b(?:(?!\{\{)[^\n]){0,40}")


def near_miss_references(t: ScenarioTemplate) -> list[Problem]:
    """Advice, not an error (a seeded file may hold another template language's `{{`):
    text that starts like a variable reference but is not one, so it is never replaced."""
    out = []
    for path, text in _walk(t.to_document(), ""):
        if "{{" not in text:
            continue
        for m in _NEAR_MISS_RE.finditer(REFERENCE_RE.sub("", text)):
            end = m.group(0).find("}}")
            shown = m.group(0)[:end + 2] if end >= 0 else m.group(0).rstrip()
            out.append(Problem(path, f'"{shown}" is not a variable reference (write '
                                     "{{ vars.NAME }}): it is left as written"))
    return out


def _check_value(name: str, var: Variable, value: str) -> str | None:
    if var.kind == "int":
        if not re.fullmatch(r"-?[0-9]{1,19}", value):
            return f'variable "{name}" must be an integer'
        assert var.min is not None and var.max is not None
        if not var.min <= int(value) <= var.max:
            return f'variable "{name}" must be within [{var.min}, {var.max}]'
        return None
    alphabet = _HEX_ALPHABET if var.kind == "hex" else _TOKEN_ALPHABET
    if len(value) != var.size or any(ch not in alphabet for ch in value):
        return f'variable "{name}" must be {var.size} {var.kind} characters'
    return None


def generate_values(t: ScenarioTemplate) -> dict[str, str]:
    """Fresh, unpredictable values for every declared variable (from `secrets`)."""
    out: dict[str, str] = {}
    for name, var in t.spec.variables.items():
        if var.kind == "int":
            assert var.min is not None and var.max is not None
            out[name] = str(var.min + secrets.randbelow(var.max - var.min + 1))
        else:
            alphabet = _HEX_ALPHABET if var.kind == "hex" else _TOKEN_ALPHABET
            out[name] = "".join(secrets.choice(alphabet) for _ in range(var.size))
    return out


class _Stream:
    """A deterministic byte stream keyed by (seed, variable name): HMAC-SHA256 in counter mode."""

    def __init__(self, seed: bytes, name: str) -> None:
        self._seed = seed
        self._name = name.encode()
        self._counter = 0
        self._buf = b""

    def below(self, n: int) -> int:
        """A uniform integer in [0, n) by rejection sampling."""
        nbytes = max(1, (n.bit_length() + 7) // 8)
        limit = (256**nbytes // n) * n
        while True:
            while len(self._buf) < nbytes:
                block = hmac.new(
                    self._seed, self._name + b"\x00" + str(self._counter).encode(), hashlib.sha256
                ).digest()
                self._counter += 1
                self._buf += block
            x = int.from_bytes(self._buf[:nbytes], "big")
            self._buf = self._buf[nbytes:]
            if x < limit:
                return x % n


def derive_values(t: ScenarioTemplate, seed: bytes) -> dict[str, str]:
    """Values derived from a secret seed (≥16 bytes): same seed, same values."""
    if len(seed) < 16:
        raise ValueError("variable seed must be at least 16 bytes")
    out: dict[str, str] = {}
    for name, var in t.spec.variables.items():
        s = _Stream(seed, name)
        if var.kind == "int":
            assert var.min is not None and var.max is not None
            out[name] = str(var.min + s.below(var.max - var.min + 1))
        else:
            alphabet = _HEX_ALPHABET if var.kind == "hex" else _TOKEN_ALPHABET
            out[name] = "".join(alphabet[s.below(len(alphabet))] for _ in range(var.size))
    return out


def values_digest(values: Mapping[str, Any]) -> str:
    """sha256 of a scenario's values as sorted, compact JSON. The orchestrator records it in
    the scenario's audit log when grading, so the scoreboard judges checks again with exactly
    the values the lab was built from, not ones a completion event names."""
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _substitute(node: Any, path: str, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        # Without "{{" there is no reference to replace: the text as it is, without asking
        # the path patterns (every lab's render walks its whole template on the
        # orchestrator's event loop).
        if "{{" not in node or not _renderable(path):
            return node
        return REFERENCE_RE.sub(lambda m: values[m.group(1)], node)
    if isinstance(node, Mapping):
        return {
            k: _substitute(v, f"{path}.{k}" if path else str(k), values) for k, v in node.items()
        }
    if isinstance(node, list | tuple):
        return [_substitute(v, f"{path}[{i}]", values) for i, v in enumerate(node)]
    return node


def render(t: ScenarioTemplate, seed_or_values: bytes | Mapping[str, str]) -> ScenarioTemplate:
    """The template with every `{{ vars.NAME }}` replaced.

    `seed_or_values` is either a secret seed (bytes; values come from `derive_values`) or the
    exact values (a mapping with one valid value per declared variable, e.g. from
    `generate_values`). Raises TemplateError naming each bad or missing value.
    """
    from forge.templates.dsl_models import ScenarioTemplate

    if isinstance(seed_or_values, bytes | bytearray):
        values = derive_values(t, bytes(seed_or_values))
    else:
        values = dict(seed_or_values)
    problems: list[Problem] = []
    for name in sorted(set(values) - set(t.spec.variables)):
        problems.append(Problem(f"vars.{name}", "value given for an undeclared variable"))
    for name, var in t.spec.variables.items():
        if name not in values:
            problems.append(Problem(f"vars.{name}", "no value given"))
            continue
        if not isinstance(values[name], str):
            problems.append(Problem(f"vars.{name}", "value must be a string"))
            continue
        msg = _check_value(name, var, values[name])
        if msg:
            problems.append(Problem(f"vars.{name}", msg))
    for path, name in referenced_variables(t):
        if name not in t.spec.variables:
            problems.append(Problem(path, f'unknown variable "{name}"'))
    if problems:
        raise TemplateError(problems, source=t.name)
    doc = _substitute(t.to_document(), "", values)
    try:
        return ScenarioTemplate.model_validate(doc)
    except ValidationError as exc:
        raise TemplateError(problems_from_validation(exc), source=t.name) from exc
