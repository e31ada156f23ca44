"""Runbook, "Failure recovery checklist — spawn_service": what the operator sees, and the fix."""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import Drill, fresh_secrets, readyz, spawn_lab, wait_for, wait_state


@pytest.mark.slow
@pytest.mark.root
def test_mismatched_secret_is_named(drill: Drill) -> None:
    drill.forge_ok("keys", "generate")
    drill.start()
    spawn = drill.services["spawn"]
    # A bad rollout: spawn_service got other SAT and ET secrets than the orchestrator.
    wrong = fresh_secrets()
    bad_env = drill.env({**drill.secrets, "SAT_HMAC_SECRET": wrong["SAT_HMAC_SECRET"],
                         "ET_HMAC_SECRET": wrong["ET_HMAC_SECRET"]})
    spawn.stop()
    spawn.start(bad_env)
    body = spawn.wait_failed_check("peer_keys", 60)
    detail = body["checks"]["peer_keys"]["detail"]
    assert "SAT_HMAC_SECRET" in detail and "ET_HMAC_SECRET" in detail
    assert "RECEIPT_HMAC_SECRET" not in detail
    assert list(body["checks"]["config"]["detail"]["keyring"]) == [
        "SAT_HMAC_SECRET", "ET_HMAC_SECRET", "RECEIPT_HMAC_SECRET", "OPERATOR_TOKEN"]
    log_line = next(line for line in spawn.log().splitlines()
                    if "readiness check peer_keys failed" in line)
    assert "SAT_HMAC_SECRET" in log_line and "ET_HMAC_SECRET" in log_line
    shown = json.dumps(body) + spawn.log()
    assert not any(v in shown for v in (*wrong.values(), *drill.secrets.values()))
    # A spawn meanwhile would fail at the orchestrator (a failed lab for the learner): it is
    # refused at once, saying to try again, with nothing counted or reserved.
    early = drill.learner("beta", "early")
    refused = httpx.post(f"{drill.url('spawn')}/v1/spawn", json={"track": "netplus"},
                         headers=early, timeout=30)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "keys_not_agreed", refused.text
    assert refused.headers["retry-after"] == "30"
    assert not any(v in refused.text for v in (*wrong.values(), *drill.secrets.values()))
    # The orchestrator's own /readyz shows which key ids it accepts, for comparison.
    orch_ring = drill.services["orchestrator"].readyz()[1]["checks"]["config"]["detail"]
    assert body["checks"]["config"]["detail"]["keyring"]["SAT_HMAC_SECRET"]["current"] not in \
        orch_ring["keyring"]["SAT_HMAC_SECRET"]["accepted"]

    # The fix: roll the orchestrator's secrets out to spawn_service; /readyz is 200 again,
    # and the refused learner's lab starts (the refusal held nothing of theirs).
    spawn.restart(drill.env())
    assert spawn.readyz()[0] == 200
    spawn_lab(drill, early)

    # The rotation order of the customer's runbook rolls OPERATOR_TOKEN out to the
    # orchestrator and the scoreboard, never to spawn_service (audit AS). Its calls to them
    # (spawn, delete, extend, task checks, results) are signed from the SAT keyring, so a
    # spawn_service left with another OPERATOR_TOKEN stays ready and a learner's lab still
    # starts and is deleted. (Its own operator token, which the orchestrator does not
    # accept, is refused for the readiness details: tests/security/
    # test_retired_operator_token.py; readiness itself is public.)
    spawn.stop()
    spawn.start(drill.env({**drill.secrets, "OPERATOR_TOKEN": wrong["OPERATOR_TOKEN"]}))
    wait_for(lambda: readyz(spawn.url)[0] == 200 or None, 60, "spawn_service ready")
    assert readyz(spawn.url, wrong["OPERATOR_TOKEN"])[0] == 401
    learner = drill.learner("acme", "ann")
    lab = spawn_lab(drill, learner)
    gone = httpx.delete(f"{drill.url('spawn')}/v1/scenarios/{lab}", headers=learner,
                        timeout=30)
    assert gone.status_code == 200, gone.text
    wait_state(drill, learner, lab, "deleted")
    spawn.restart(drill.env())
    assert spawn.readyz()[0] == 200
    spawn_lab(drill, learner)


@pytest.mark.slow
@pytest.mark.root
def test_entitlement_store_unreachable_then_recovers(drill: Drill) -> None:
    # The entitlement file source lives on a mount that can go away.
    mount = drill.root / "mnt"
    mount.mkdir()
    source = mount / "entitlements.json"
    source.write_text(json.dumps({"grants": [{"tenant_id": "filecorp", "plan": "PRO"}]}))
    drill.extra["ENTITLEMENTS_FILE"] = str(source)
    drill.forge_ok("keys", "generate")
    drill.start()
    spawn = drill.services["spawn"]
    out = drill.forge_ok("apikey", "create", "--tenant", "filecorp", "--subject", "fay")
    learner = {"x-api-key": out.split("api_key", 1)[1].split()[0]}

    hidden = drill.root / "entitlements.offline"
    source.rename(hidden)
    body = spawn.wait_failed_check("entitlement_store")
    assert body["status"] == "not_ready"
    assert f"entitlements file {source} is missing" in body["checks"]["entitlement_store"][
        "detail"]
    refused = httpx.post(f"{spawn.url}/v1/spawn", json={"track": "netplus"}, headers=learner,
                         timeout=30)
    assert ("readiness check entitlement_store failed: ENTITLEMENTS_FILE: entitlements file"
            in spawn.log())
    assert refused.status_code in (403, 503), refused.text
    assert "Traceback" not in refused.text

    # The source is back: /readyz recovers by itself and the learner can spawn.
    hidden.rename(source)
    wait_for(lambda: spawn.readyz()[0] == 200, 30, "spawn_service ready again")
    assert "readiness check entitlement_store recovered" in spawn.log()
    spawn_lab(drill, learner)
