"""Attack: change the policy tables (plans, tracks, capability tables) a decision reads.

The tables live in the bundle's data document (policies/data.json, loaded once per
interpreter) instead of in the Rego. A learner controls the input: an input shaped like
the data (`{"forge": {"tables": ...}}`, a key named `data`) must not reach the tables.
A local user or operator who can write the policy directory must not slip a table past
the hash pin or the loader: a changed table changes the bundle hash, and a missing,
malformed, overlapping or symlinked data file fails at load, naming the file, instead of
reading as undefined (or as a rule) on every decision.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from forge.content import content_path
from forge.policy import EmbeddedEngine, PolicyBundle, PolicyError, policy_hash
from forge.policy.gates import entry_path, gate_decisions
from forge.policy.opa_server import OpaServer
from forge.policy.remote import RemoteEngine

from .test_policy_input_projection import whole_input

POLICIES = content_path("policies")
DATA = "data.json"
# Every table opened up: any track, tier and capability, a plan with no ceilings.
PERMISSIVE: dict[str, Any] = {"tables": {
    "tracks": {"netplus": True, "ccna": True, "cissp": True, "evil": True},
    "training": {
        "plans": {"FREE": {"tiers": {"foundation": True, "intermediate": True, "advanced": True},
                           "max_exploits": 10**6, "cpu": 64, "memory_mb": 10**6,
                           "pids": 10**6, "timeout_minutes": 10**6}},
        "tier_max_exploits": {"foundation": 10**6, "intermediate": 10**6, "advanced": 10**6},
        "approved_profiles": {"internet": True}, "limit_keys": []},
    "capabilities": {"allowed": {"netplus": {"foundation": {"SYS_ADMIN": True}}},
                     "privileged": {}},
    "spawn": {"request_id_chars": "./abcdefghijklmnopqrstuvwxyz-", "quota_fields": []},
}}


@pytest.fixture(scope="module")
def engine() -> EmbeddedEngine:
    return EmbeddedEngine(PolicyBundle.load(POLICIES))


def _copy(tmp_path: Path) -> Path:
    dest = tmp_path / "policies"
    shutil.copytree(POLICIES, dest)
    return dest


def _denied_everywhere() -> dict[str, Any]:
    """A spawn every table refuses: unknown track, privileged capability, a plan over
    its ceilings, an unapproved egress profile and a bad request id."""
    doc = whole_input()
    doc["template"]["track"] = doc["request"]["track"] = "evil"
    doc["template"]["limits"]["cpu"] = 64
    doc["template"]["network"] = {"egress": "allowlist", "allowlist_profile": "internet"}
    doc["template"]["containers"][0]["capabilities"] = ["SYS_ADMIN"]
    doc["plan"]["tracks"] = ["evil"]
    doc["request"]["request_id"] = "../../x"
    return doc


@pytest.mark.parametrize("entry", ["launch", "admit"])
def test_input_shaped_like_the_data_cannot_change_a_table(
        engine: EmbeddedEngine, entry: str) -> None:
    base = _denied_everywhere()
    want = engine.decide_gates(entry, base)
    assert not want.allow
    forged = {**copy.deepcopy(base), "forge": copy.deepcopy(PERMISSIVE),
              "data": {"forge": copy.deepcopy(PERMISSIVE)}, "tables": PERMISSIVE["tables"]}
    for doc in (forged, {**forged, "template": {**forged["template"], "forge": PERMISSIVE}}):
        got = engine.decide_gates(entry, doc)
        whole = gate_decisions(entry, engine.evaluate(entry_path(entry), doc),
                               engine.policy_hash)
        for answer in (got, whole):
            assert not answer.allow
            assert answer.combined.reasons == want.combined.reasons
    assert engine.query("x := data.forge.tables", forged)["bindings"]["x"] == \
        PolicyBundle.load(POLICIES).data["forge"]["tables"]


def test_a_changed_table_changes_the_hash_and_the_decision(tmp_path: Path) -> None:
    policies = _copy(tmp_path)
    before = policy_hash(policies)
    data = json.loads((policies / DATA).read_text())
    data["forge"]["tables"]["tracks"]["evil"] = True
    (policies / DATA).write_text(json.dumps(data))
    assert policy_hash(policies) != before
    engine = EmbeddedEngine(PolicyBundle.load(policies))
    assert not engine.projects  # not the shipped bundle: judged on the whole input
    doc = whole_input()
    doc["template"]["track"] = doc["request"]["track"] = "evil"
    doc["plan"]["tracks"] = ["evil"]
    reasons = engine.decide_gates("launch", doc).combined.reasons
    assert not any("unknown track" in r for r in reasons)


def test_remote_engine_reads_the_served_bundles_tables(tmp_path: Path) -> None:
    """The OPA-compatible server loads the data file with the modules: a table changed in
    the served directory changes the remote decision, as it does the embedded one."""
    policies = _copy(tmp_path)
    data = json.loads((policies / DATA).read_text())
    del data["forge"]["tables"]["tracks"]["netplus"]
    (policies / DATA).write_text(json.dumps(data))
    server = OpaServer(EmbeddedEngine(PolicyBundle.load(policies)), "127.0.0.1", 0)
    thread = server.start_background()
    remote = RemoteEngine(server.url, policy_hash=policy_hash(policies))
    try:
        doc = whole_input()
        assert EmbeddedEngine(PolicyBundle.load(POLICIES)).decide_gates("launch", doc).allow
        refused = remote.decide_gates("launch", doc)
        assert not refused.allow
        assert any('unknown track "netplus"' in r for r in refused.combined.reasons)
    finally:
        remote.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("content,words", [
    (None, "no data.json"),
    (b'{"forge": ', "data.json is not valid JSON"),
    (b"[]", "data.json must hold a JSON object"),
    (b'{"forge": {"tables": {}}, "forge": {}}', "key 'forge' appears twice"),
    (b'{"forge": {"tables": {"x": NaN}}}', "NaN is not a number"),
    (b'{"forge": {"tables": {"x": "a\\"b"}}}', "quote, backslash or control character"),
    (b'{"forge": {"tables": {}}}', "reads data.forge.tables."),
    (b'{"forge": {"tables": {"tracks": {}}, "training": {"allow": true}}}',
     "overlaps package forge.training"),
    (b'\xff\xfe', "data.json is not valid JSON"),
])
def test_a_missing_or_malformed_data_file_fails_at_load_naming_it(
        tmp_path: Path, content: bytes | None, words: str) -> None:
    policies = _copy(tmp_path)
    if content is None:
        (policies / DATA).unlink()
    else:
        (policies / DATA).write_bytes(content)
    for load in (lambda: PolicyBundle.load(policies), lambda: policy_hash(policies)):
        with pytest.raises(PolicyError) as info:
            load()
        assert words in str(info.value)
        assert DATA in str(info.value) or "data.forge" in str(info.value)


def test_data_overlapping_a_rule_never_becomes_the_rule(tmp_path: Path) -> None:
    """Data at a rule's path (`data.forge.training.allow: true`) would answer for the rule
    in an engine that merged it; the loader refuses it."""
    for package, doc in (("forge.training", {"training": {"allow": True}}),
                         ("forge.spawn", {"spawn": {"admission_allow": True}}),
                         ("forge.gates", {"gates": {"launch": {}}})):
        policies = _copy(tmp_path / package)
        data = json.loads((policies / DATA).read_text())
        data["forge"].update(doc)
        (policies / DATA).write_text(json.dumps(data))
        with pytest.raises(PolicyError, match=f"overlaps package {package}"):
            PolicyBundle.load(policies)


def test_a_symlinked_data_file_is_refused(tmp_path: Path) -> None:
    policies = _copy(tmp_path)
    outside = tmp_path / "tables.json"
    (policies / DATA).rename(outside)
    (policies / DATA).symlink_to(outside)
    with pytest.raises(PolicyError, match="symlink"):
        PolicyBundle.load(policies)


@pytest.mark.parametrize("name", ["data.yaml", "data.yml", "extra.json", "sub/more.yaml",
                                  "bundle.tar.gz"])
def test_data_opa_would_load_is_refused_not_skipped(tmp_path: Path, name: str) -> None:
    """`opa run --server DIR` loads every JSON and YAML file as data (at its directory's
    path): a stray one would give OPA a table this engine, the hash and the pin never
    see, so the loader refuses it."""
    policies = _copy(tmp_path)
    (policies / name).parent.mkdir(exist_ok=True)
    (policies / name).write_text(json.dumps(
        {"forge": {"tables": {"capabilities": {"allowed": {"netplus": {
            "foundation": {"SYS_ADMIN": True}}}}}}}))
    with pytest.raises(PolicyError, match=name.rsplit("/", 1)[-1].replace(".", r"\.")):
        PolicyBundle.load(policies)


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    """Python's rglob does not enter a linked directory but OPA follows it."""
    policies = _copy(tmp_path)
    outside = tmp_path / "more"
    outside.mkdir()
    (outside / "extra.rego").write_text("package forge.extra\nx := 1\n")
    (policies / "more").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PolicyError, match="symlink"):
        PolicyBundle.load(policies)


@pytest.mark.parametrize("line", [
    " package forge.tables.training.approved_profiles",
    "\tpackage forge.tables.training.approved_profiles",
    'package forge["tables"].training.approved_profiles',
    'package forge.tables["training"]',
])
def test_a_module_placing_rules_over_the_tables_is_refused(tmp_path: Path, line: str) -> None:
    """rego-cpp merges a module's rules into the data at its package's path: a package
    written with a leading blank or a quoted segment must be read as such, or a rule
    would add an approved profile (or a capability) that the data file never held."""
    policies = _copy(tmp_path)
    (policies / "evil.rego").write_text(f"{line}\n\nevil := true\n")
    with pytest.raises(PolicyError, match=r"overlaps package forge\.tables"):
        PolicyBundle.load(policies)


def test_a_package_line_the_loader_cannot_read_is_refused(tmp_path: Path) -> None:
    policies = _copy(tmp_path)
    (policies / "odd.rego").write_text('package forge . tables\n\nx := true\n')
    with pytest.raises(PolicyError, match=r"odd\.rego: package"):
        PolicyBundle.load(policies)


@pytest.mark.parametrize(("change", "words"), [
    (lambda t: t["training"].update(limit_keys=[]), "is empty"),
    (lambda t: t["assignment"].update(number_fields=[]), "is empty"),
    (lambda t: t.update({"tracks": {"netplus\n": True}}), "not a plain name"),
    (lambda t: t.update(deep="DEEP"), "nested too deeply"),
])
def test_a_table_that_would_pass_vacuously_or_cannot_be_read_is_refused(
        tmp_path: Path, change: Any, words: str) -> None:
    """An empty list would make `every key in ...` pass (a plan with no ceilings); a
    key ending in a newline or a document nested past the parser's depth is an error
    naming the file, not an engine failure at the first decision."""
    policies = _copy(tmp_path)
    data = json.loads((policies / DATA).read_text())
    change(data["forge"]["tables"])
    text = json.dumps(data).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)
    (policies / DATA).write_text(text)
    with pytest.raises(PolicyError) as info:
        PolicyBundle.load(policies)
    assert words in str(info.value) and DATA in str(info.value)


def test_request_id_check_refuses_what_the_pattern_refuses(engine: EmbeddedEngine) -> None:
    """The request-id check without a regex (trim over the allowed characters, then the
    length) answers as `^[A-Za-z0-9._-]{8,64}$` does, wherever it could differ."""
    pattern = "`^[A-Za-z0-9._-]{8,64}$`"
    ids: list[Any] = ["req-0001", "req-001", "a" * 64, "a" * 65, "", ".-_.-_.-", "req 0001",
                      "req-0001/", "réq-0001", "req-0001é", "é" * 8, "ÿÿÿÿÿÿÿÿ", "\u2028" * 8,
                      "req-00001\u00a0", "ABCDEFGHabcdefgh12345678._-", "req+0001",
                      "req-0001" * 8, "req-0001" * 8 + "x", 12345678, None, ["req-0001"]]
    for rid in ids:
        got = engine.query(
            f"a := [v | v := data.forge.spawn.request_id_ok(input.r)]; "
            f"b := [v | is_string(input.r); v := regex.match({pattern}, input.r)]",
            {"r": rid})["bindings"]
        assert (got["a"] == [True]) == (got["b"] == [True]), rid
