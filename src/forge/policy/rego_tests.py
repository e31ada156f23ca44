"""Run Rego unit tests (`policies/*_test.rego`) through the embedded engine.

regopy has no `opa test`, so the runner finds each test module's package and its
`test_*` rules and queries `data.<package>.<rule>`: a test passes only when the rule is
exactly `true` (undefined or false fails; an engine error is an error). The same files run
unchanged under `opa test`.

Notes on regopy 1.5.2 (measured): `with input as …` crashes the process (SIGSEGV) when the
mocked rule depends on other input-dependent rules, and partial `with input.x as …` gives
wrong answers; a function in a test package with the same name as one in the tested
package also crashes it. So the gates keep their logic in functions of the input document
(`reasons(doc)`, `allowed(doc)`) and the tests call those directly, without `with`, using
names not defined by the gate. The pytest suite runs this module in a subprocess so a
crash is a failed test, not a lost run.

    python -m forge.policy.rego_tests [--policies DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from forge.policy.decision import PolicyError
from forge.policy.embedded import EmbeddedEngine
from forge.policy.rego_bundle import PolicyBundle

_PACKAGE_RE = re.compile(r"^package\s+([a-z][a-z0-9_.]*)\s*$", re.MULTILINE)
_TEST_RE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)


@dataclass(frozen=True)
class RegoTestResult:
    """Outcome of one `test_*` rule."""

    file: str
    name: str
    outcome: str  # "pass" | "fail" | "error"
    detail: str = ""


def discover(bundle: PolicyBundle) -> list[tuple[str, str, str]]:
    """(file, package, rule) for every test rule, in file then source order."""
    found: list[tuple[str, str, str]] = []
    for f in bundle.tests:
        text = f.data.decode("utf-8")
        m = _PACKAGE_RE.search(text)
        if not m:
            found.append((f.relpath, "", ""))
            continue
        seen: set[str] = set()
        for name in _TEST_RE.findall(text):
            if name not in seen:
                seen.add(name)
                found.append((f.relpath, m.group(1), name))
    return found


def _entrypoint_value(text: str) -> list[object]:
    """[value] of an entrypoint's output, or [] when it is undefined."""
    if text.strip() == "undefined":
        return []
    exprs = json.loads(text).get("expressions", [])
    return list(exprs) if isinstance(exprs, list) else []


def run_tests(policy_dir: Path | None = None) -> list[RegoTestResult]:
    """Evaluate every test rule of the bundle; one result per rule."""
    bundle = PolicyBundle.load(policy_dir)
    engine = EmbeddedEngine(bundle)
    results: list[RegoTestResult] = []
    interp = engine.test_interpreter()
    cases = discover(bundle)
    # Compile every test rule once as a bundle entrypoint (rego-cpp recompiles all modules
    # on each plain query, which is ~20x slower).
    entrypoints = [f"{pkg.replace('.', '/')}/{name}" for _, pkg, name in cases if pkg]
    compiled = interp.build(None, entrypoints) if entrypoints else None
    for file, package, name in cases:
        if not package:
            results.append(RegoTestResult(file, "", "error", "no package declaration"))
            continue
        try:
            if compiled is not None and compiled.ok():
                ep = f"{package.replace('.', '/')}/{name}"
                out = interp.query_bundle_entrypoint(compiled, ep)
                text = str(out)
                value = _entrypoint_value(text) if out.ok() else None
            else:
                out = interp.query(f"x := [v | v := data.{package}.{name}]")
                text = str(out)
                value = json.loads(text)["bindings"]["x"] if out.ok() else None
        except Exception as exc:
            results.append(RegoTestResult(file, name, "error", f"{type(exc).__name__}: {exc}"))
            continue
        if value == [True]:
            results.append(RegoTestResult(file, name, "pass"))
        elif value is None:
            results.append(RegoTestResult(file, name, "error", text[:500]))
        else:
            shown = "undefined" if value == [] else json.dumps(value[0])
            results.append(RegoTestResult(file, name, "fail", f"rule is {shown}, not true"))
    return results


def main(argv: list[str] | None = None) -> int:
    """Print results; exit 0 only if every test passed (and at least one ran)."""
    ap = argparse.ArgumentParser(description="Run Rego unit tests with the embedded engine.")
    ap.add_argument("--policies", type=Path, default=None)
    ap.add_argument("--json", action="store_true", help="print results as JSON")
    args = ap.parse_args(argv)
    try:
        results = run_tests(args.policies)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.outcome != "pass"]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            mark = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}[r.outcome]
            extra = f" — {r.detail}" if r.detail else ""
            print(f"{mark} {r.file}::{r.name}{extra}")
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if not results:
        print("error: no Rego tests found", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
