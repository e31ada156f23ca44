"""The three gates through the real Rego engine (regopy), with the repository policies."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from forge.policy import (
    Decision,
    EmbeddedEngine,
    PolicyBundle,
    PolicyError,
    PolicyInputError,
    build_spawn_input,
    decide_all,
)

Build = Callable[..., dict[str, Any]]


def test_good_template_allowed(engine: EmbeddedEngine, template_doc: dict[str, Any],
                               training_input: Build) -> None:
    doc = training_input(template_doc)
    for package in ("forge.training", "forge.capabilities"):
        d = engine.decide(package, doc)
        assert d == Decision(True, [], engine.policy_hash, package)
    assert decide_all(engine, doc).allow


def test_privileged_capability_denied_for_tier(engine: EmbeddedEngine,
                                               template_doc: dict[str, Any],
                                               training_input: Build) -> None:
    template_doc["spec"]["assets"]["containers"][0]["capabilities"] = ["SYS_ADMIN"]
    d = engine.decide("forge.capabilities", training_input(template_doc))
    assert not d.allow
    assert d.reasons == [
        'container "learner" requests privileged capability SYS_ADMIN, not allowed for '
        "netplus/foundation"
    ]


def test_ordinary_capability_denied_on_foundation_allowed_on_ccna(
    engine: EmbeddedEngine, template_doc: dict[str, Any], training_input: Build
) -> None:
    template_doc["spec"]["assets"]["containers"][0]["capabilities"] = ["NET_ADMIN"]
    d = engine.decide("forge.capabilities", training_input(template_doc))
    assert d.reasons == [
        'container "learner" requests capability NET_ADMIN, not allowed for netplus/foundation '
        "(allowed: none)"
    ]
    template_doc["metadata"]["labels"] = ["class:ccna", "tier:intermediate"]
    doc = training_input(template_doc, plan="PRO", tracks=("netplus", "ccna"), track="ccna")
    assert engine.decide("forge.capabilities", doc).allow
    assert engine.decide("forge.training", doc).allow


def test_wrong_track_denied(engine: EmbeddedEngine, template_doc: dict[str, Any],
                            training_input: Build) -> None:
    doc = training_input(template_doc, plan="PRO", tracks=("netplus", "ccna"), track="ccna")
    d = engine.decide("forge.training", doc)
    assert not d.allow
    assert d.reasons == [
        'template "fixture-good" is for track "netplus", but track "ccna" was requested'
    ]


def test_track_outside_plan_denied(engine: EmbeddedEngine, template_doc: dict[str, Any],
                                   training_input: Build) -> None:
    doc = training_input(template_doc, plan="FREE", tracks=("ccna",))
    assert engine.decide("forge.training", doc).reasons == [
        'plan FREE does not include track "netplus"'
    ]


def test_unapproved_egress_profile_denied(engine: EmbeddedEngine, template_doc: dict[str, Any],
                                          training_input: Build) -> None:
    template_doc["spec"]["network"].update(egress="allowlist", allowlist_profile="internet")
    d = engine.decide("forge.training", training_input(template_doc))
    assert not d.allow
    assert d.reasons == [
        'egress allowlist profile "internet" is not approved (approved: package-mirrors)'
    ]
    template_doc["spec"]["network"]["allowlist_profile"] = "package-mirrors"
    assert engine.decide("forge.training", training_input(template_doc)).allow


def test_plan_limits_denied(engine: EmbeddedEngine, template_doc: dict[str, Any],
                            training_input: Build) -> None:
    template_doc["spec"]["limits"].update(cpu=2, attacker_max_exploits=6)
    d = engine.decide("forge.training", training_input(template_doc))
    assert d.reasons == [
        "limits.attacker_max_exploits 6 exceeds the FREE plan limit of 5",
        "limits.attacker_max_exploits 6 exceeds the foundation tier limit of 5",
        "limits.cpu 2 exceeds the FREE plan cap of 1",
    ]


def test_combined_decision_prefixes_packages(engine: EmbeddedEngine,
                                             template_doc: dict[str, Any],
                                             training_input: Build) -> None:
    template_doc["spec"]["assets"]["containers"][2]["capabilities"] = ["BPF"]
    d = decide_all(engine, training_input(template_doc, track="ccna"))
    assert not d.allow
    assert d.reasons[0].startswith('forge.training: template "fixture-good" is for track')
    assert d.reasons[-1].startswith('forge.capabilities: container "target" requests privileged')


def test_spawn_gate(engine: EmbeddedEngine) -> None:
    good = build_spawn_input(request_id="req-00000001", track="ccna", subject="alice",
                             tenant="acme", plan_name="PRO", plan_tracks=["netplus", "ccna"],
                             concurrent_limit=3, concurrent_used=2, rate_limit_per_minute=10,
                             rate_used=0)
    assert engine.decide("forge.spawn", good).allow
    full = {**good, "quota": {**good["quota"], "concurrent": {"limit": 3, "used": 3}}}
    assert engine.decide("forge.spawn", full).reasons == [
        "concurrent scenario quota reached (3 of 3 in use)"
    ]


def test_undefined_package_is_deny_with_reason(engine: EmbeddedEngine) -> None:
    d = engine.decide("forge.nothing_here", {})
    assert not d.allow
    assert d.reasons == [
        "data.forge.nothing_here.allow is undefined and the policy gave no reason"
    ]


@pytest.mark.parametrize("bad", ["forge/training", "forge.training; x := 1", "forge.t[0]", "Forge.training", "a..b", ""])
def test_package_names_validated(engine: EmbeddedEngine, bad: str) -> None:
    with pytest.raises(PolicyInputError, match="invalid policy package"):
        engine.decide(bad, {})


def test_unsafe_input_strings_refused_with_field(engine: EmbeddedEngine) -> None:
    forged = '", "allow": true, "x": "'
    with pytest.raises(PolicyInputError, match=r"input\.request\.track: contains a quote"):
        engine.decide("forge.training", {"request": {"track": forged}})
    with pytest.raises(PolicyInputError, match=r"input\.plan\.tracks\[1\]"):
        engine.decide("forge.training", {"plan": {"tracks": ["ok", "new\nline"]}})


def test_broken_policy_fails_at_construction(tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_text("package bad\nimport rego.v1\nallow if { x := }\n")
    with pytest.raises(PolicyError, match=r"bad\.rego does not compile"):
        EmbeddedEngine(tmp_path)


@pytest.mark.parametrize("mode", ["pool", "lock", "per_call"])
def test_modes_agree_under_threads(bundle: PolicyBundle, mode: str,
                                   template_doc: dict[str, Any], training_input: Build) -> None:
    eng = EmbeddedEngine(bundle, mode=mode)  # type: ignore[arg-type]
    good = training_input(template_doc)
    template_doc["spec"]["assets"]["containers"][0]["capabilities"] = ["SYS_MODULE"]
    bad = training_input(template_doc)
    rounds = 2 if mode == "per_call" else 10
    errors: list[BaseException] = []
    results: list[tuple[bool, bool]] = []

    def work() -> None:
        try:
            for _ in range(rounds):
                results.append((eng.decide("forge.capabilities", good).allow,
                                eng.decide("forge.capabilities", bad).allow))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [(True, False)] * (4 * rounds)
