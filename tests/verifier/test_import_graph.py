"""The verifier stands alone and the platform's audit, evidence and grading packages do not
import each other in a circle: what the verifier shares with them lives in forge_verify."""

from __future__ import annotations

import itertools

import grimp
import pytest

DOMAIN = ("forge.audit", "forge.evidence", "forge.grading")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """The import graph of both packages (static analysis, nothing is imported)."""
    return grimp.build_graph("forge", "forge_verify", cache_dir=None)


def test_forge_verify_imports_nothing_of_forge(graph: grimp.ImportGraph) -> None:
    chain = graph.find_shortest_chain(importer="forge_verify", imported="forge",
                                      as_packages=True)
    assert chain is None, chain


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(DOMAIN, 2)))
def test_no_cycle_between(graph: grimp.ImportGraph, first: str, second: str) -> None:
    there = graph.find_shortest_chain(importer=first, imported=second, as_packages=True)
    back = graph.find_shortest_chain(importer=second, imported=first, as_packages=True)
    assert there is None or back is None, (there, back)


def test_canonical_json_is_a_leaf(graph: grimp.ImportGraph) -> None:
    assert graph.find_modules_directly_imported_by("forge_verify.canonical") == set()
