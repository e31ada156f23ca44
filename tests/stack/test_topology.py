"""What `forge up` runs (stack/topology.py): nodes, prefixes, and each process's storage root."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from forge.runtime.local.kernel_names import validate_prefix
from forge.stack.topology import MAX_NODES, TopologyError, plan

PORTS = {"spawn": 8082, "orchestrator": 8083, "scoreboard": 8086}


def test_one_node_is_todays_platform_on_one_shared_root(tmp_path: Path) -> None:
    topo = plan(tmp_path, PORTS, base_prefix="fg")
    assert [(p.name, p.service, p.port) for p in topo.processes] == [
        ("orchestrator", "orchestrator", 8083), ("scoreboard", "scoreboard", 8086),
        ("spawn", "spawn", 8082)]
    assert topo.storage_roots() == [tmp_path]
    [node] = topo.nodes
    assert node.environ("127.0.0.1", 8083) == {
        "STORAGE_ROOT": str(tmp_path), "FORGE_NODE_ID": "node-1",
        "FORGE_NODE_URL": "http://127.0.0.1:8083", "FORGE_RUNTIME_PREFIX": "fg"}


@pytest.mark.parametrize("base", ["fg", "a", "zz9", "abcd", "s1a2b", "r0f3e"])
def test_every_node_gets_its_own_valid_prefix_and_id(tmp_path: Path, base: str) -> None:
    topo = plan(tmp_path, PORTS, base_prefix=base, nodes=MAX_NODES)
    prefixes = [p.prefix or "" for p in topo.nodes]
    assert prefixes[0] == base
    assert len(set(prefixes)) == MAX_NODES
    assert all(validate_prefix(p) == p for p in prefixes)
    assert [p.node for p in topo.nodes] == [f"node-{i}" for i in range(1, MAX_NODES + 1)]
    assert [p.port for p in topo.nodes][1:] == [None] * (MAX_NODES - 1)  # picked at bind


def test_installations_whose_prefixes_differ_after_three_characters_get_distinct_nodes(
        tmp_path: Path) -> None:
    # Every node i >= 2 was `<first 3 chars>n<i>`: on one machine `fgfa`, `fgfb` … all
    # derived `fgfn2` for their node 2, one runtime prefix for several installations.
    derived = {base: [p.prefix for p in plan(tmp_path, PORTS, base_prefix=base,
                                             nodes=3).nodes][1:]
               for base in ("fgfa", "fgfb", "fgf", "fg")}
    assert derived == {"fgfa": ["fgfa2", "fgfa3"], "fgfb": ["fgfb2", "fgfb3"],
                       "fgf": ["fgfn2", "fgfn3"], "fg": ["fgn2", "fgn3"]}


def test_a_prefix_that_collides_with_a_derived_one_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="FORGE_RUNTIME_PREFIX=abcn2 collides"):
        plan(tmp_path, PORTS, base_prefix="abcn2", nodes=2)


@pytest.mark.usefixtures("sqlite_only_store")
def test_separate_storage_gives_each_process_its_own_owner_only_root(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    (stack / "secrets").mkdir(parents=True)
    (stack / "secrets" / "dev-secrets.json").write_text('{"k": "v"}')
    topo = plan(stack, PORTS, nodes=2, separate_storage=True)
    topo.prepare_roots()
    roots = [p.storage_root for p in topo.processes]
    assert len(set(roots)) == len(roots) == 4 and stack not in roots
    for root in roots:
        assert root.is_dir() and stat.S_IMODE(root.stat().st_mode) == 0o700
        assert root.parent == stack / "roots"
        copy = root / "secrets" / "dev-secrets.json"
        assert copy.read_text() == '{"k": "v"}'
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE((stack / "roots").stat().st_mode) == 0o700
    # One database for all (SQLite under each root would split the installation in four).
    assert {p.env["FORGE_DB_URL"] for p in topo.processes} == {f"sqlite:///{stack}/forge.db"}
    assert all("FORGE_DB_URL" not in p.env for p in plan(
        stack, PORTS, nodes=2, separate_storage=True,
        db_url="postgresql+psycopg://forge@db/forge").processes)
