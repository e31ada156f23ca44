"""Choosing a lab: POST /v1/spawn takes an optional `lab` of the track, GET /v1/tracks lists
every lab by track. Live spawn_service (real uvicorn, nats-server, SQLite and PostgreSQL)
over a template directory with several labs per track (tests/support/lab_catalog.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from forge.entitlements.grants import grant
from forge.services.spawn.state import track_templates
from forge.store.db import Database
from forge.store.models import IdempotencyRecord, QuotaSlot, RateCounter, Scenario
from forge.templates.registry import TemplateRegistry
from forge.tokens import SAT, verify_token

from ..support.lab_catalog import lab_catalog_dir
from .conftest import MakeSpawn
from .test_spawn_api import count, fetch_spawn_events, key_for


def template_of(db: Database, scenario_id: str) -> str:
    with db.read() as sess:
        row = sess.get(Scenario, scenario_id)
        assert row is not None
        return str(row.template_id)


def test_learner_chooses_among_a_tracks_labs(make_spawn: MakeSpawn, tmp_path: Path) -> None:
    env = make_spawn(FORGE_TEMPLATE_DIR=str(lab_catalog_dir(tmp_path / "templates")))
    db = env.state.ctx.db
    grant(db, "acme", "PRO", "alice")
    headers = key_for(env)
    with env.client() as client:
        # The catalog: every lab by track, the plan's tracks first; PRO lacks the advanced
        # netplus lab's tier and the whole cissp track, which come locked with their plans.
        view = client.get("/v1/tracks", headers=headers).json()
        groups = {g["track"]: g for g in view["labs"]}
        assert list(groups) == ["netplus", "ccna", "cissp"]
        assert [t["lab"] for t in view["tracks"]] == ["netplus", "ccna"]  # defaults, as before
        netplus = groups["netplus"]
        assert netplus["default_lab"] == "netplus" and not netplus["locked"]
        assert [(lab["lab"], lab["tier"], lab["locked"]) for lab in netplus["labs"]] == [
            ("basic-netplus", "foundation", False), ("netplus", "foundation", False),
            ("netplus-advanced", "advanced", True)]
        advanced = netplus["labs"][2]
        assert advanced["title"] == "Find the hidden server"
        assert advanced["unlocked_by"] == ["TEAM", "ENTERPRISE"]
        assert groups["cissp"]["locked"] and groups["cissp"]["labs"][0]["unlocked_by"] == [
            "TEAM", "ENTERPRISE"]
        assert [lab["lab"] for lab in groups["ccna"]["labs"]] == ["ccna", "ccna-b"]
        # Clients are generated from the OpenAPI document: it describes `lab` and the groups.
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        lab_field = schemas["SpawnBody"]["properties"]["lab"]
        assert "default lab" in lab_field["description"]
        assert {"type": "string", "maxLength": 63, "pattern": "^[a-z][a-z0-9-]{0,62}$"}.items() \
            <= lab_field["anyOf"][0].items()
        assert set(schemas["TrackGroup"]["required"]) == {"track", "default_lab", "locked",
                                                          "labs"}
        assert {"lab", "tier", "locked", "unlocked_by"} <= set(schemas["LabOffer"]["required"])

        # Without `lab`: the track's default, the template named like the track (though
        # basic-netplus sorts first). With `lab`: that lab.
        default = client.post("/v1/spawn", headers=headers, json={"track": "netplus"})
        assert default.status_code == 201, default.text
        chosen = client.post("/v1/spawn", headers=headers,
                             json={"track": "netplus", "lab": "basic-netplus",
                                   "request_id": "req-lab-00001"})
        assert chosen.status_code == 201, chosen.text
        assert template_of(db, default.json()["scenario_id"]) == "netplus"
        assert template_of(db, chosen.json()["scenario_id"]) == "basic-netplus"
        events = {e["scenario_id"]: e for e in
                  asyncio.run(fetch_spawn_events(env.nats.admin_url, 2))}
        event = events[chosen.json()["scenario_id"]]
        assert event["template_id"] == "basic-netplus"  # what the orchestrator launches
        assert verify_token(env.settings.sat, SAT, event["sat"])["template_id"] == \
            "basic-netplus"

        # The same request id: the same lab replays, a different lab is a conflict.
        again = client.post("/v1/spawn", headers=headers,
                            json={"track": "netplus", "lab": "basic-netplus",
                                  "request_id": "req-lab-00001"})
        assert again.status_code == 200 and again.json() == chosen.json()
        other = client.post("/v1/spawn", headers=headers,
                            json={"track": "netplus", "lab": "netplus",
                                  "request_id": "req-lab-00001"})
        assert other.status_code == 409 and other.json()["error"] == "request_id_conflict"

        before = [count(env, m) for m in (Scenario, QuotaSlot, RateCounter, IdempotencyRecord)]
        # Unknown lab, and a lab of another track: 400 naming the field and the track's labs.
        for track, lab in (("netplus", "nope"), ("netplus", "ccna-b"), ("ccna", "netplus")):
            resp = client.post("/v1/spawn", headers=headers,
                               json={"track": track, "lab": lab, "request_id": "req-lab-00002"})
            assert resp.status_code == 400, resp.text
            body = resp.json()
            assert body["error"] == "unknown_lab" and body["message"].startswith("lab: ")
            assert body["details"][0]["field"] == "lab"
            assert body["details"][0]["allowed"] == [x["lab"] for x in groups[track]["labs"]]
        bad = client.post("/v1/spawn", headers=headers,
                          json={"track": "netplus", "lab": "../netplus"})
        assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
        assert [d["field"] for d in bad.json()["details"]] == ["lab"]
        # A lab of a tier the plan lacks: 403, as the training gate would refuse it.
        tier = client.post("/v1/spawn", headers=headers,
                           json={"track": "netplus", "lab": "netplus-advanced",
                                 "request_id": "req-lab-00003"})
        assert tier.status_code == 403 and tier.json()["error"] == "tier_not_in_plan"
        assert "advanced" in tier.json()["message"]
        # Nothing was counted, reserved or remembered for the refused requests.
        after = [count(env, m) for m in (Scenario, QuotaSlot, RateCounter, IdempotencyRecord)]
        assert after == before
        # ... so the refused request id is still free for a request that is allowed.
        ok = client.post("/v1/spawn", headers=headers,
                         json={"track": "ccna", "lab": "ccna-b",
                               "request_id": "req-lab-00003"})
        assert ok.status_code == 201, ok.text
        assert template_of(db, ok.json()["scenario_id"]) == "ccna-b"


def test_a_track_without_a_lab_of_its_name_defaults_to_its_first_by_name(
        tmp_path: Path) -> None:
    root = lab_catalog_dir(tmp_path / "templates")
    (root / "netplus.yaml").unlink()
    defaults = track_templates(TemplateRegistry.load(root))
    assert defaults == {"netplus": "basic-netplus", "ccna": "ccna", "cissp": "cissp"}
