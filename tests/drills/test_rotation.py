"""Runbook, "Secret rotation & rollout order", done by an operator under live traffic; and the
Ed25519 verdict signing key rotated with `forge keys rotate`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from forge.bus import Publisher
from forge.bus.subjects import DURABLE_ORCHESTRATOR_SPAWN, SPAWN_REQUESTED
from forge.config import load_settings
from forge_verify import verify_paths

from ..orchestrator.conftest import spawn_event
from .conftest import (
    SECRET_NAMES,
    SERVICES,
    Drill,
    fresh_secrets,
    spawn_lab,
    submit,
    verify_verdict,
    wait_for,
    wait_verdict,
)
from .traffic import Traffic

SERVICES_IN_RUNBOOK_ORDER = ("spawn", "orchestrator", "scoreboard")


def staged(current: dict[str, str], suffix: str, other: dict[str, str]) -> dict[str, str]:
    """`current` secrets plus `other` under NAME_NEXT or NAME_PREVIOUS (verify only)."""
    return {**current, **{f"{name}{suffix}": other[name] for name in SECRET_NAMES}}


def verdict_files(drill: Drill, scenario_id: str) -> tuple[Path, Path, Path, Path]:
    results = drill.results(scenario_id)
    return (results / "score.json", next(results.glob("evidence.tar.*")),
            results / "verdict.sig", results / "verdict.pub")


def failed_events(drill: Drill) -> list[sa.Row[tuple[str, str, str]]]:
    engine = sa.create_engine(drill.db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(
                "SELECT consumer, scenario_id, error FROM failed_events")))
    finally:
        engine.dispose()


def publish(nats_url: str, body: dict[str, object]) -> None:
    async def go() -> None:
        async with Publisher(nats_url) as pub:
            await pub.connection.wait_ready(5)
            await pub.publish(SPAWN_REQUESTED, body, msg_id=secrets.token_hex(8))
    asyncio.run(go())


@pytest.mark.slow
@pytest.mark.root
def test_rotation_in_runbook_order_under_traffic(drill: Drill) -> None:
    old, new = drill.secrets, fresh_secrets()
    drill.forge_ok("keys", "generate")
    drill.start()
    learners = {f"l{i}": drill.learner("rotco", f"l{i}") for i in range(3)}
    # Credentials minted with the old secrets before the rotation starts:
    old_receipt = drill.forge_ok("receipt", "mint", "--tenant", "rotco", "--plan", "TEAM",
                                 "--subject", "late").strip()
    old_settings = load_settings(drill.env())
    urls = {name: drill.url(name) for name in SERVICES}
    traffic = Traffic(urls, learners, [old["OPERATOR_TOKEN"]])
    traffic.start()
    try:
        wait_for(lambda: traffic.count() >= 2, 60, "traffic under way")

        # 1. Pre-stage: the new secrets go out as NAME_NEXT everywhere (verify only, so in no
        # particular order: the three restart at once, all down together under traffic).
        traffic.phase = "pre-stage"
        pre_staged = drill.env(staged(old, "_NEXT", new))
        with ThreadPoolExecutor(len(SERVICES)) as pool:
            list(pool.map(lambda name: drill.services[name].restart(pre_staged), SERVICES))
        traffic.operator_tokens = [old["OPERATOR_TOKEN"], new["OPERATOR_TOKEN"]]
        # 2-4. spawn_service, then orchestrator, then scoreboard: new current, old _PREVIOUS.
        rolled = staged(new, "_PREVIOUS", old)
        for step, name in enumerate(SERVICES_IN_RUNBOOK_ORDER, start=2):
            traffic.phase = f"step{step}-{name}"
            drill.services[name].restart(drill.env(rolled))
            # Let learners spawn under this mix of old and new before the next step.
            wait_for(partial(traffic.count, traffic.phase), 60, f"a spawn during step {step}")
        # 5. Verify: /readyz everywhere (restart waited for it) and an end-to-end scenario.
        traffic.phase = "verify"
        wait_for(partial(traffic.scored, "step4-scoreboard"), 120,
                 "an end-to-end scenario scored after the scoreboard rolled")
        # A receipt sold before the rotation still buys a spawn while _PREVIOUS is in force.
        during = httpx.post(f"{urls['spawn']}/v1/spawn", json={"track": "netplus"},
                            headers={"x-receipt-token": old_receipt}, timeout=30)
        assert during.status_code == 201, during.text
        # Before retiring _PREVIOUS, every scenario whose SAT was signed with the old secret
        # (spawned before spawn_service rolled) must have its verdict: the scoreboard checks
        # that SAT again when the completion arrives.
        old_signed = {"before", "pre-stage"}
        # Woken by each verdict; a scenario its learner gave up on fails the drill at once.
        traffic.wait_scored(old_signed, 120)
        # 6. Retire _PREVIOUS, in the same order.
        traffic.phase = "retire"
        traffic.operator_tokens = [new["OPERATOR_TOKEN"]]
        for name in SERVICES_IN_RUNBOOK_ORDER:
            drill.services[name].restart(drill.env(new))
        traffic.phase = "after"
        wait_for(lambda: traffic.count("after") >= 2, 90, "traffic after retirement")
    finally:
        traffic.stop()

    print(f"rotation drill: {len(traffic.scenarios)} scenarios, {traffic.operator_calls} "
          f"operator calls, {traffic.refused} refused or dropped requests")
    assert traffic.refused == 0, "\n".join(traffic.failures)
    assert traffic.failures == [], "\n".join(traffic.failures)
    phases = {s.phase for s in traffic.scenarios.values()}
    assert {"before", "step2-spawn", "step3-orchestrator", "step4-scoreboard",
            "after"} <= phases, sorted(phases)
    # Zero lost completions: every spawned scenario has exactly one verdict, and it verifies.
    for sid, scenario in traffic.scenarios.items():
        assert scenario.verdict is not None, f"{sid} ({scenario.phase}) has no verdict"
        assert sorted(p.name for p in drill.results(sid).iterdir()) == sorted(
            ["score.json", verdict_files(drill, sid)[1].name, "verdict.sig", "verdict.pub"])
        assert verify_paths(*verdict_files(drill, sid)).status == "PASS", sid
    assert failed_events(drill) == []
    first = next(iter(traffic.scenarios))
    assert verify_verdict(drill, first).returncode == 0

    # After retirement, anything signed with an old secret is refused.
    for name in ("orchestrator", "scoreboard"):
        url = {"orchestrator": f"{urls['orchestrator']}/v1/scenarios",
               "scoreboard": f"{urls['scoreboard']}/v1/admin/failed-events"}[name]
        assert httpx.get(url, headers=drill.operator(old["OPERATOR_TOKEN"])).status_code == 401
        assert httpx.get(url, headers=drill.operator(new["OPERATOR_TOKEN"])).status_code == 200
    restart_sub = f"{urls['spawn']}/v1/admin/nats/restart-subscriber"
    assert httpx.post(restart_sub, headers=drill.operator(old["OPERATOR_TOKEN"]),
                      timeout=30).status_code == 401
    refused = httpx.post(f"{urls['spawn']}/v1/spawn", json={"track": "netplus"},
                         headers={"x-receipt-token": old_receipt}, timeout=30)
    assert refused.status_code == 401, refused.text
    unopened = next(iter(traffic.scenarios.values())).access_url
    link = httpx.get(urls["spawn"] + unopened, follow_redirects=False, timeout=30)
    assert link.status_code == 401 and "forge_session" not in link.cookies, link.text
    # A spawn event whose SAT and ET carry the old secrets' key ids is refused by the
    # orchestrator and kept as a failed event; no scenario is created for it.
    forged = spawn_event(old_settings, template="lab-netplus", tenant="rotco", subject="l0")
    publish(drill.nats.admin_url, forged)
    rows = wait_for(lambda: [r for r in failed_events(drill)
                             if r.scenario_id == forged["scenario_id"]], 30,
                    "the old-secret spawn event to be refused")
    assert rows[0].consumer == DURABLE_ORCHESTRATOR_SPAWN
    assert "SAT refused" in rows[0].error
    assert not any(v in rows[0].error for v in (*old.values(), *new.values()))
    assert not (drill.storage / "scenarios" / forged["scenario_id"] / "results").exists()
    # The logs never carried a secret.
    for svc in drill.services.values():
        log = svc.log()
        assert not any(v in log for v in (*old.values(), *new.values())), svc.name


@pytest.mark.slow
@pytest.mark.root
def test_signing_key_rotation_keeps_old_verdicts_verifiable(drill: Drill) -> None:
    drill.forge_ok("keys", "generate")
    drill.start()
    learner = drill.learner("keyco", "kim")
    before = spawn_lab(drill, learner)
    submit(drill, learner, before)
    wait_verdict(drill, learner, before)

    # The operator rotates the verdict signing key; the scoreboard picks it up (restart).
    out = drill.forge_ok("keys", "rotate")
    assert "current signing key is now" in out
    drill.services["scoreboard"].restart(drill.env())
    listing = drill.forge_ok("keys", "list").splitlines()
    assert len(listing) == 3 and sum(line.endswith("current") for line in listing) == 1

    after = spawn_lab(drill, learner)
    submit(drill, learner, after)
    wait_verdict(drill, learner, after)
    # The verdict signed before the rotation is still served, unchanged.
    assert httpx.get(f"{drill.url('scoreboard')}/v1/scores/{before}",
                     headers=learner).status_code == 200

    # Exported trusted keys prove origin of verdicts signed before and after the rotation.
    trusted = drill.root / "trusted"
    drill.forge_ok("keys", "export-public", "--out", str(trusted))
    assert len(list(trusted.glob("*.pem"))) == 2
    pubs = {sid: (drill.results(sid) / "verdict.pub").read_bytes() for sid in (before, after)}
    assert pubs[before] != pubs[after], "the new verdict is signed with the new key"
    for sid in (before, after):
        proc = verify_verdict(drill, sid, "--trusted-key", str(trusted), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["origin"] == "proven"
        cli = drill.forge("verify", *map(str, verdict_files(drill, sid)), "--trusted-key",
                          str(trusted), "--json")
        assert cli.returncode == 0 and json.loads(cli.stdout)["origin"] == "proven"
    # Only the exported keys are trusted: with just the new key, the old verdict's origin is
    # not proven (so the export really is what makes it verifiable).
    only_new = drill.root / "only-new"
    only_new.mkdir()
    for pem in trusted.glob("*.pem"):
        if pem.read_bytes().strip() == pubs[after].strip():
            shutil.copy(pem, only_new / pem.name)
    assert len(list(only_new.iterdir())) == 1
    old_only = verify_verdict(drill, before, "--trusted-key", str(only_new))
    assert old_only.returncode == 1 and "[untrusted_key]" in old_only.stdout
