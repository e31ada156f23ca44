"""Which collected tests touch the state store, and whether their id says on which engine.

Issue 15: every suite that touches the store runs on SQLite and PostgreSQL (the `db_url`
fixture), and a test that runs on SQLite only says so in its id (`sqlite_only`, see
`SQLITE_ONLY` in tests/conftest.py). The rule, checked for every collected test by the
hook in tests/conftest.py:

* A test *touches the store* when the source of its function, of a helper function or
  class of its own module that it names, or of any fixture it uses (directly or through
  other fixtures) opens one: a `Database(...)`, a `sqlite:` URL, an app or its state
  (`build_app(` and its aliases, `build_service(`, `make_context(`, `create_app(`,
  `...State(`, `Scorer(`), or a `forge serve|up|demo` command line (`"serve", ...` in an
  argv). A prod environment without FORGE_DB_URL stores in `sqlite:///STORAGE_ROOT/forge.db`,
  so such services are on SQLite. Parsing settings alone opens no store.
* Such a test is *engine-explicit* when it is one variant of an engine parametrization
  (some parameter of its callspec is "sqlite" or "postgres", as `db_url` and
  `SQLITE_ONLY` give), carries the `sqlite_only` mark, runs on PostgreSQL only
  (`postgres_url`, `postgres_cluster`), or its function name says the engine it is about
  (`test_sqlite_runs_in_wal...`).
* A store-touching test that is not engine-explicit fails at setup with a message naming
  the fix. Tests that open no store (pure functions, CLI parsing, bus only) are untouched;
  a test flagged by a pattern whose store is not real says so with `@pytest.mark.no_store`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest

ENGINE_VALUES = frozenset({"sqlite", "postgres"})
STORE_PATTERNS = re.compile(
    r"\bDatabase\(|sqlite:|\bbuild_(?:app|service|spawn|orchestrator|scoreboard)\("
    r"|\bmake_context\(|\bcreate_app\(|\b(?:Spawn|Orchestrator|Scoreboard)State\(|\bScorer\("
    r"|[\"'](?:serve|up|demo)[\"']\s*,")
# Modules owned by another work stream at the time this rule was added; their owner adds
# `usefixtures("sqlite_only_store")` (or `db_url`) and removes the line here.
NOT_YET_CHECKED: frozenset[str] = frozenset()
_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\b")
_SOURCE_CACHE: dict[int, str] = {}


def _source(obj: Any) -> str:
    """The source text of a function or class ('' when it has none), cached per object."""
    key = id(obj)
    if key not in _SOURCE_CACHE:
        try:
            _SOURCE_CACHE[key] = inspect.getsource(obj)
        except (OSError, TypeError):
            _SOURCE_CACHE[key] = ""
    return _SOURCE_CACHE[key]


def _with_local_helpers(func: Callable[..., Any], module: Any) -> Iterable[str]:
    """The function's source, then that of the module-level helpers it names (one level)."""
    text = _source(func)
    yield text
    if module is None:
        return
    module_name = getattr(module, "__name__", None)
    for name in set(_NAME.findall(text)):
        helper = getattr(module, name, None)
        if helper is func or getattr(helper, "__module__", None) != module_name:
            continue
        if inspect.isfunction(helper) or inspect.isclass(helper):
            yield _source(helper)


def touches_store(item: pytest.Item) -> bool:
    """Whether this test, its module's helpers it calls, or a fixture it uses opens a store."""
    if item.get_closest_marker("no_store") is not None:
        return False
    if item.nodeid.split("::")[0] in NOT_YET_CHECKED:
        return False
    func = getattr(item, "function", None)
    if func is None:
        return False
    texts = list(_with_local_helpers(func, getattr(item, "module", None)))
    info = getattr(item, "_fixtureinfo", None)
    if info is not None:
        for defs in info.name2fixturedefs.values():
            for fixturedef in defs:
                fixture_func = fixturedef.func
                fixture_module = inspect.getmodule(fixture_func)
                texts.extend(_with_local_helpers(fixture_func, fixture_module))
    return any(STORE_PATTERNS.search(text) for text in texts)


def engine_explicit(item: pytest.Item) -> bool:
    """Whether the test id says its engine: an engine parameter, the sqlite_only mark, a
    PostgreSQL-only fixture (`postgres_url`, `postgres_cluster`), or a name that says which engine it is about."""
    if item.get_closest_marker("sqlite_only") is not None:
        return True
    if {"postgres_url", "postgres_cluster"} & set(getattr(item, "fixturenames", ())):
        return True
    if any(engine in item.name.split("[")[0] for engine in ENGINE_VALUES):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return any(isinstance(value, str) and value in ENGINE_VALUES
               for value in callspec.params.values())


def violation(item: pytest.Item) -> str | None:
    """Why this test breaks the engine rule, or None when it keeps it."""
    if engine_explicit(item) or not touches_store(item):
        return None
    return (f"{item.nodeid} touches the state store but is neither parametrized over "
            "`db_url` (SQLite and PostgreSQL) nor named `sqlite_only` (use SQLITE_ONLY "
            "from tests/conftest.py); see tests/support/store_engines.py")
