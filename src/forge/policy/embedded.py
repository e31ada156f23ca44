"""In-process Rego evaluation with regopy (Microsoft's rego-cpp).

regopy answers `undefined` for a rule that is not true, so the engine queries with
comprehension bindings (`a := [x | x := data.pkg.allow]`) that are always defined, and
treats anything but `allow == true` as deny.

rego-cpp recompiles every module on each `Interpreter.query` (~20-30 ms for our gates), so
each distinct query is compiled once into a regopy Bundle and then run with
`query_bundle` (a gates entry as a compiled entrypoint, read through
forge.policy.native_query). The tables the rules read are the bundle's data document,
loaded once per interpreter (forge.policy.policy_data). The input goes in as a regopy.Input
built from the Python value (forge.policy.native_input: no JSON text for the engine to
parse, which was most of a query's fixed cost), and with the shipped policies
`decide_gates` hands each entry only the fields its rules read (forge.policy.projection).
An Interpreter (and its bundles) is never used by two threads at
once. Default `mode="lock"`: one interpreter behind a lock, measured as fast as or faster
than `mode="pool"` (one interpreter per concurrent caller) on 2 cores, and it keeps a single
rego-cpp instance in use at a time; `mode="per_call"` compiles everything per call and is
~10x slower (bench/policy.py measures all three).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeAlias

import regopy

from forge.policy.decision import (
    Decision,
    GateDecisions,
    PolicyError,
    PolicyEvaluationError,
    check_input,
    check_package,
    decision_from_result,
    no_repeated_keys,
)
from forge.policy.gates import entry_path, gate_decisions
from forge.policy.native_input import native_input
from forge.policy.native_query import entrypoint_text, query_text
from forge.policy.projection import project
from forge.policy.rego_bundle import PolicyBundle, hash_files, shipped_decision_hash

Mode = Literal["pool", "lock", "per_call"]


_OUTPUT_OBJECT = no_repeated_keys(lambda m: PolicyEvaluationError(f"engine output: {m}"))


def parse_output(text: str) -> dict[str, Any]:
    """Parse regopy's JSON output strictly (no duplicate keys)."""
    try:
        data = json.loads(text, object_pairs_hook=_OUTPUT_OBJECT)
    except ValueError as exc:
        raise PolicyEvaluationError(f"engine output is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyEvaluationError("engine output is not an object")
    return data


_MAX_CACHED_QUERIES = 64
EngineInput: TypeAlias = str | regopy.Input


def engine_input(value: Mapping[str, Any]) -> EngineInput:
    """An input already checked (check_input) in the form the engine takes cheapest: a
    regopy.Input, or JSON text for a value regopy.Input would not carry exactly."""
    native = native_input(value)
    return native if native is not None else json.dumps(value, allow_nan=False)


class _Slot:
    """One interpreter plus the bundles it compiled, used by one thread at a time."""

    def __init__(self, interp: regopy.Interpreter) -> None:
        self.interp = interp
        self.bundles: dict[str, regopy.Bundle] = {}
        self.input: EngineInput | None = None  # kept alive while the interpreter holds it

    def _bundle(self, key: str, query: str | None, entrypoint: str | None) -> regopy.Bundle:
        bundle = self.bundles.get(key)
        if bundle is None:
            bundle = self.interp.build(query, [entrypoint] if entrypoint else [])
            if not bundle.ok():
                raise PolicyEvaluationError("query does not compile")
            if len(self.bundles) >= _MAX_CACHED_QUERIES:
                self.bundles.pop(next(iter(self.bundles)))
            self.bundles[key] = bundle
        return bundle

    def _set_input(self, input_term: EngineInput) -> None:
        if isinstance(input_term, str):
            self.interp.set_input_term(input_term)
        else:
            self.interp.set_input(input_term)
        self.input = input_term

    def run(self, query: str, input_term: EngineInput) -> str:
        bundle = self._bundle(query, query, None)
        self._set_input(input_term)
        ok, text = query_text(self.interp, bundle)
        if not ok:
            raise PolicyEvaluationError(f"query failed: {text}")
        return text

    def run_entrypoint(self, path: str, input_term: EngineInput) -> str:
        """The output text of the rule at dotted `path` (`{"expressions":[value]}` or
        `undefined`), compiled as an entrypoint."""
        entrypoint = path.replace(".", "/")
        bundle = self._bundle("entrypoint " + entrypoint, None, entrypoint)
        self._set_input(input_term)
        ok, text = entrypoint_text(self.interp, bundle, entrypoint.encode())
        if not ok:
            raise PolicyEvaluationError(f"query failed: {text}")
        return text


class EmbeddedEngine:
    """PolicyEngine over a PolicyBundle, evaluated in-process."""

    def __init__(self, bundle: PolicyBundle | Path | None = None, mode: Mode = "lock") -> None:
        self.bundle = bundle if isinstance(bundle, PolicyBundle) else PolicyBundle.load(bundle)
        self.mode: Mode = mode
        # Projection (forge.policy.projection) mirrors what the shipped policies read; a
        # bundle with other decision modules or data (FORGE_POLICY_DIR) may read any field,
        # so its gates get the whole input, as a remote OPA does.
        self.projects = hash_files(self.bundle.decision_files) == shipped_decision_hash()
        self._data_json = json.dumps(self.bundle.data, allow_nan=False)
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._shared: _Slot | None = None
        # Compile once now so a broken policy fails at start, not on the first spawn.
        self._idle.put(_Slot(self._new_interpreter()))

    @property
    def policy_hash(self) -> str:
        """Hash of the loaded bundle."""
        return self.bundle.hash

    def _new_interpreter(self, with_tests: bool = False) -> regopy.Interpreter:
        interp = regopy.Interpreter()
        # The tables the rules read, loaded once per interpreter (forge.policy.policy_data).
        try:
            interp.add_data_json(self._data_json)
        except regopy.RegoError as exc:
            names = ", ".join(f.relpath for f in self.bundle.data_files)
            raise PolicyError(f"policy data ({names}) is refused by the engine: {exc}") from exc
        files = self.bundle.modules + (self.bundle.tests if with_tests else ())
        for f in files:
            try:
                interp.add_module(f.relpath, f.data.decode("utf-8"))
            except (regopy.RegoError, UnicodeDecodeError) as exc:
                raise PolicyError(f"policy module {f.relpath} does not compile: {exc}") from exc
        # rego-cpp compiles lazily; force it so errors surface here, not on a spawn.
        try:
            out = interp.query("x := 1")
        except (regopy.RegoError, ValueError) as exc:
            raise PolicyError(f"policy bundle does not compile: {exc}") from exc
        if not out.ok():
            raise PolicyError(f"policy bundle does not compile: {out}")
        return interp

    @contextmanager
    def _slot(self) -> Iterator[_Slot]:
        if self.mode == "per_call":
            yield _Slot(self._new_interpreter())
        elif self.mode == "lock":
            with self._lock:
                if self._shared is None:
                    self._shared = self._idle.get()
                yield self._shared
        else:
            try:
                slot = self._idle.get_nowait()
            except queue.Empty:
                slot = _Slot(self._new_interpreter())
            try:
                yield slot
            finally:
                self._idle.put(slot)

    def query(self, query: str, input: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run a raw Rego query; returns the parsed output ({} when undefined)."""
        if input is not None:
            check_input(input)
        return self._run(query, engine_input(input if input is not None else {}))

    def _run(self, query: str, term: EngineInput) -> dict[str, Any]:
        """Run `query` over an input already checked and converted (engine_input)."""
        with self._slot() as slot:
            try:
                text = slot.run(query, term)
            except (regopy.RegoError, ValueError) as exc:
                raise PolicyEvaluationError(f"query failed: {exc}") from exc
        return {} if text.strip() == "undefined" else parse_output(text)

    def evaluate(self, path: str, input: Mapping[str, Any] | None = None) -> Any:
        """The value of `data.<path>` (dotted), or None when undefined."""
        if input is not None:
            check_input(input)
        return self._evaluate(path, engine_input(input or {}))

    def _evaluate(self, path: str, term: EngineInput) -> Any:
        check_package(path)
        result = self._run(f"x := [v | v := data.{path}]", term)
        values = result.get("bindings", {}).get("x", [])
        if not isinstance(values, list) or len(values) > 1:
            raise PolicyEvaluationError(f"unexpected value shape for data.{path}")
        return values[0] if values else None

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision:
        """Evaluate `allow` and `deny_reasons` of `package` for `input`."""
        check_input(input)
        return self.decide_checked(package, input)

    def decide_checked(self, package: str, input: Mapping[str, Any]) -> Decision:
        """`decide` over an input already checked (check_input), so a caller that checked
        it (the decision cache) does not walk it again."""
        check_package(package)
        term = engine_input(input)
        result = self._run(
            f"a := [v | v := data.{package}.allow]; r := [v | v := data.{package}.deny_reasons]",
            term,
        )
        bindings = result.get("bindings")
        if not isinstance(bindings, dict) or set(bindings) != {"a", "r"}:
            raise PolicyEvaluationError(f"unexpected engine output for {package}")
        allow_vals, reason_vals = bindings["a"], bindings["r"]
        if not isinstance(allow_vals, list) or not isinstance(reason_vals, list):
            raise PolicyEvaluationError(f"unexpected engine output for {package}")
        if len(allow_vals) > 1 or len(reason_vals) > 1:
            raise PolicyEvaluationError(f"data.{package} rules are not single-valued")
        allow = allow_vals[0] if allow_vals else None
        reasons = reason_vals[0] if reason_vals else None
        return decision_from_result(package, allow, reasons, self.policy_hash)

    def decide_gates(self, entry: str, input: Mapping[str, Any]) -> GateDecisions:
        """Every gate of `forge.gates.<entry>` for `input`, in one query. The whole input
        is checked (a refused value is refused wherever it is); the engine gets only the
        fields the entry reads (forge.policy.projection)."""
        check_input(input)
        return self.decide_gates_checked(entry, input)

    def decide_gates_checked(self, entry: str, input: Mapping[str, Any]) -> GateDecisions:
        """`decide_gates` over an input already checked (check_input)."""
        path = entry_path(entry)
        doc = project(entry, input) if self.projects else input
        term = engine_input(doc)
        with self._slot() as slot:
            try:
                text = slot.run_entrypoint(path, term)
            except (regopy.RegoError, ValueError) as exc:
                raise PolicyEvaluationError(f"query failed: {exc}") from exc
        value = None
        if text.strip() != "undefined":
            values = parse_output(text).get("expressions")
            if not isinstance(values, list) or len(values) != 1:
                raise PolicyEvaluationError(f"unexpected value shape for data.{path}")
            value = values[0]
        return gate_decisions(entry, value, self.policy_hash)

    def probe(self) -> None:
        """The embedded engine is always reachable once constructed."""

    def test_interpreter(self) -> regopy.Interpreter:
        """A fresh interpreter with decision and test modules (for the Rego test runner)."""
        return self._new_interpreter(with_tests=True)
