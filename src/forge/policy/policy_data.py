"""The data document of a policy bundle: the constant tables the rules read (`data.json`).

rego-cpp builds a rule-defined constant object again on every query that reads it (about
0.09 ms a table); a data document loaded once into the interpreter is read for about
0.007 ms (issue 19 item 4). So the tables (plans, tiers, capability tables, tracks) live in
`data.json` files, laid out as OPA lays out a bundle: a `data.json` in directory `a/b`
is the document at `data.a.b`, so `opa run --server DIR` serves the same data.

Loading fails closed, naming the file: JSON that is malformed, repeats a key, holds a
non-finite number or a character the engine would not escape in its output, is not an
object, or overlaps another data file or a package; and a module that reads a
`data.` path which is neither a package nor in the data (a data file missing or without
that table) is refused at load rather than read as undefined on every decision.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from forge.policy.decision import UNSAFE_CHARS, PolicyError, no_repeated_keys

DATA_FILE = "data.json"
# A data path segment the checks below understand; other names are refused.
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
# A package line as the engine reads it (leading blanks allowed), and the reference it
# names: dotted names and ["quoted"] segments, which rego-cpp also takes.
_PACKAGE_LINE_RE = re.compile(r"^[ \t]*package\b[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_PACKAGE_SEGMENT_RE = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\["([^"\\]*)"\]')
_DATA_REF_RE = re.compile(r"(?<![A-Za-z0-9_.])data((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
# Rego strings ("..." with escapes, `...` raw) and comments, skipped when reading references.
_NOISE_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')

Path_ = tuple[str, ...]


def _no_constant(relpath: str) -> Any:
    def refuse(name: str) -> Any:
        raise PolicyError(f"policy data file {relpath}: {name} is not a number JSON allows")
    return refuse


def _check_value(relpath: str, value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not _KEY_RE.fullmatch(k):
                raise PolicyError(f"policy data file {relpath}: key {k!r} at {where or '/'} "
                                  "is not a plain name ([A-Za-z_][A-Za-z0-9_-]*)")
            _check_value(relpath, v, f"{where}/{k}")
    elif isinstance(value, list):
        if not value:  # a rule iterating it (`every key in ...`) would pass vacuously
            raise PolicyError(f"policy data file {relpath}: list at {where} is empty")
        for i, v in enumerate(value):
            _check_value(relpath, v, f"{where}/{i}")
    elif isinstance(value, str):
        if UNSAFE_CHARS.search(value):
            raise PolicyError(f"policy data file {relpath}: string at {where} holds a quote, "
                              "backslash or control character")
    elif isinstance(value, float) and not math.isfinite(value):
        raise PolicyError(f"policy data file {relpath}: number at {where} is not finite")


def parse_data_file(relpath: str, data: bytes) -> dict[str, Any]:
    """The document of one data file, placed at its directory's path (OPA's layout)."""
    try:
        unique = no_repeated_keys(lambda m: PolicyError(f"policy data file {relpath}: {m}"))
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=unique,
                         parse_constant=_no_constant(relpath))
    except RecursionError:
        raise PolicyError(f"policy data file {relpath} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise PolicyError(f"policy data file {relpath} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise PolicyError(f"policy data file {relpath} must hold a JSON object")
    try:
        _check_value(relpath, doc, "")
    except RecursionError:
        raise PolicyError(f"policy data file {relpath} is nested too deeply") from None
    for part in reversed(relpath.split("/")[:-1]):
        if not _KEY_RE.fullmatch(part):
            raise PolicyError(f"policy data file {relpath}: directory {part!r} is not a "
                              "plain name")
        doc = {part: doc}
    return doc


def _merge(into: dict[str, Any], doc: dict[str, Any], relpath: str, where: Path_) -> None:
    for k, v in doc.items():
        if k not in into:
            into[k] = v
        elif isinstance(into[k], dict) and isinstance(v, dict):
            _merge(into[k], v, relpath, (*where, k))
        else:
            raise PolicyError(f"policy data file {relpath} redefines data."
                              f"{'.'.join((*where, k))}")


def merge_data(files: Iterable[tuple[str, bytes]]) -> dict[str, Any]:
    """One data document from every data file (relative path, bytes); overlaps refused."""
    merged: dict[str, Any] = {}
    for relpath, data in files:
        _merge(merged, parse_data_file(relpath, data), relpath, ())
    return merged


def _code(text: str) -> str:
    return _NOISE_RE.sub(" ", text)


def packages_of(modules: Iterable[tuple[str, str]]) -> dict[Path_, str]:
    """Package path -> the module declaring it, for (relative path, source) modules."""
    out: dict[Path_, str] = {}
    for relpath, text in modules:
        # Strings and comments blanked in place, so a match's span reads the source.
        code = _NOISE_RE.sub(lambda n: " " * len(n.group(0)), text)
        for m in _PACKAGE_LINE_RE.finditer(code):
            out.setdefault(_package_path(relpath, text[m.start(1):m.end(1)]), relpath)
    return out


def _package_path(relpath: str, ref: str) -> Path_:
    """The path of a package reference; PolicyError when it is not one this check reads
    (it could then place rules over the data unseen)."""
    parts: list[str] = []
    at = 0
    while at < len(ref):
        m = _PACKAGE_SEGMENT_RE.match(ref, at)
        dotted = m is not None and m.group(1) is not None
        if m is None or (dotted and (at == 0) == m.group(0).startswith(".")) or (
                not dotted and at == 0):
            raise PolicyError(f"policy module {relpath}: package {ref!r} is not a plain "
                              "dotted name")
        parts.append(m.group(1) or m.group(2))
        at = m.end()
    if not parts:
        raise PolicyError(f"policy module {relpath}: a package line names no package")
    return tuple(parts)


def _has(doc: Any, path: Path_) -> bool:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return False
        doc = doc[key]
    return True


def _leaves(doc: dict[str, Any], where: Path_ = ()) -> Iterable[Path_]:
    for k, v in doc.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, (*where, k))
        else:
            yield (*where, k)


def check_data_fits(modules: list[tuple[str, str]], data: dict[str, Any],
                    data_files: list[str]) -> None:
    """Refuse data that overlaps a package, and a module reading a `data.` path that is
    neither under a package nor in the data (a missing or incomplete data file)."""
    packages = packages_of(modules)

    def under_package(path: Path_) -> bool:
        return any(path[:len(p)] == p or p[:len(path)] == path for p in packages)

    for leaf in _leaves(data):
        for pkg, module in packages.items():
            if leaf[:len(pkg)] == pkg or pkg[:len(leaf)] == leaf:
                raise PolicyError(f"policy data data.{'.'.join(leaf)} overlaps package "
                                  f"{'.'.join(pkg)} ({module})")
    for relpath, text in modules:
        for m in _DATA_REF_RE.finditer(_code(text)):
            path = tuple(m.group(1)[1:].split("."))
            if under_package(path) or _has(data, path):
                continue
            files = ", ".join(data_files) if data_files else f"no {DATA_FILE}"
            raise PolicyError(f"policy module {relpath} reads data.{'.'.join(path)}, which "
                              f"no package defines and the policy data ({files}) lacks")
