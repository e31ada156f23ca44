"""Attack: mint a receipt naming someone else's learner through checkout (then use it as that
learner over the API or through the web sign-in); and: run stub billing in production.

Before issue 12 an anonymous `POST /v1/billing/checkout {"subject": "alice"}` returned a
receipt that identified its holder as alice (API and web sign-in), and `BILLING_MODE=stub`
started happily with `FORGE_ENV=prod`. Now a checkout receipt names only the signed-in buyer
or a learner the checkout creates, an unproven receipt is no identity, and stub billing
outside dev is a configuration error naming the variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from forge.config import load_settings
from forge.config.settings import ConfigError
from forge.identity.apikeys import create_api_key
from forge.tokens import RECEIPT, mint_token

from ..services.conftest import prod_environ
from ..spawn.conftest import MakeSpawn, SpawnEnv, make_spawn  # noqa: F401 (fixture)


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite_only", marks=pytest.mark.sqlite_only)])
def db_url(tmp_path: Path) -> str:
    """Who may be named in a checkout is decided before the store is reached: SQLite only
    (the spawn suite runs the same service on both engines)."""
    return f"sqlite:///{tmp_path / 'forge.db'}"

REPO = Path(__file__).resolve().parents[2]


def _alice_with_a_lab(env: SpawnEnv) -> tuple[dict[str, str], str]:
    """alice@acme exists: an API key and a running lab of hers."""
    key = {"x-api-key": create_api_key(env.state.ctx.db, "acme", "alice").plaintext}
    bought = httpx.post(f"{env.url}/v1/billing/checkout", headers=key,
                        json={"plan": "PRO", "days": 5})
    assert bought.status_code == 201, bought.text
    spawned = httpx.post(f"{env.url}/v1/spawn", json={"track": "netplus"},
                         headers={**key, "x-receipt-token": bought.json()["receipt"]})
    assert spawned.status_code == 201, spawned.text
    return key, str(spawned.json()["scenario_id"])


def test_anonymous_checkout_cannot_name_an_existing_learner(
        make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn("dev")
    _, lab = _alice_with_a_lab(env)
    with env.client() as client:
        # The attack: no credentials, alice's name in the body (also with dev-only headers).
        for headers in ({}, {"x-client-id": "alice", "x-tenant-id": "acme"}):
            resp = client.post("/v1/billing/checkout", headers=headers,
                               json={"plan": "PRO", "tenant_id": "acme", "subject": "alice"})
            assert resp.status_code == 401, resp.text
            body = resp.json()
            assert body["error"] == "credentials_required"
            assert body["details"] == [{"field": "subject"}]
            assert "receipt" not in body
        # Without a name, an anonymous buyer gets a new learner, never alice.
        fresh = client.post("/v1/billing/checkout", json={"plan": "PRO", "tenant_id": "acme"})
        assert fresh.status_code == 201, fresh.text
        assert fresh.json()["new_subject"] is True
        assert fresh.json()["subject"] not in ("alice", None)
        # That receipt does not open alice's lab.
        peek = client.get(f"/v1/scenarios/{lab}",
                          headers={"x-receipt-token": fresh.json()["receipt"]})
        assert peek.status_code in (401, 404)


def test_signed_in_buyer_gets_a_receipt_for_themselves_only(
        make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn("dev")
    key, lab = _alice_with_a_lab(env)
    with env.client() as client:
        mine = client.post("/v1/billing/checkout", headers=key, json={"plan": "PRO"})
        assert mine.status_code == 201, mine.text
        assert (mine.json()["tenant_id"], mine.json()["subject"]) == ("acme", "alice")
        assert mine.json()["new_subject"] is False
        # Her own receipt identifies her: a lab spawned with it alone is hers.
        spawned = client.post("/v1/spawn", json={"track": "netplus"},
                              headers={"x-receipt-token": mine.json()["receipt"]})
        assert spawned.status_code == 201, spawned.text
        own = client.get(f"/v1/scenarios/{spawned.json()['scenario_id']}", headers=key)
        assert own.status_code == 200 and lab != spawned.json()["scenario_id"]
        # Signed in as alice, buying "for bob" (or another tenant) is refused.
        for field, value in (("subject", "bob"), ("tenant_id", "other")):
            resp = client.post("/v1/billing/checkout", headers=key,
                               json={"plan": "PRO", field: value})
            assert resp.status_code == 403, resp.text
            assert resp.json()["details"] == [{"field": field}]


def test_web_sign_in_refuses_a_receipt_that_does_not_prove_its_learner(
        make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn("dev")
    _, lab = _alice_with_a_lab(env)
    # What the old checkout handed to anyone: a receipt naming alice, signed by the service.
    legacy = mint_token(env.settings.receipt, RECEIPT,
                        {"tenant_id": "acme", "plan": "PRO", "retention_days": 30,
                         "charge_id": "ch_stub_x", "sub": "alice"}, ttl_s=3600)
    origin = {"origin": env.url}
    with env.client(follow_redirects=False) as client:
        resp = client.post("/signin", data={"receipt": legacy}, headers=origin)
        assert resp.status_code == 400
        assert "This receipt does not prove its learner" in resp.text  # on the form
        assert "forge_session" not in resp.cookies
        assert client.get(f"/lab/{lab}").status_code != 200
        # Nor is it alice's identity over the API.
        api = client.post("/v1/spawn", json={"track": "netplus"},
                          headers={"x-receipt-token": legacy})
        assert api.status_code == 401 and api.json()["error"] == "credentials_required"
    # A receipt from today's anonymous checkout signs in as the new learner it created.
    with env.client(follow_redirects=False) as client:
        fresh = client.post("/v1/billing/checkout", json={"plan": "PRO", "tenant_id": "acme"})
        resp = client.post("/signin", data={"receipt": fresh.json()["receipt"]}, headers=origin)
        assert resp.status_code == 303 and resp.headers["location"] == "/tracks"
        assert client.get(f"/lab/{lab}").status_code == 404  # alice's lab stays hers


@pytest.mark.parametrize("forge_env", ["prod", "staging"])
def test_stub_billing_is_a_configuration_error_outside_dev(tmp_path: Path,
                                                           forge_env: str) -> None:
    environ = prod_environ(tmp_path / "storage", FORGE_ENV=forge_env, BILLING_MODE="stub")
    with pytest.raises(ConfigError) as err:
        load_settings(environ)
    assert any(p.startswith("BILLING_MODE=stub is forbidden") for p in err.value.problems)
    # Without BILLING_MODE the default is disabled, and that starts.
    del environ["BILLING_MODE"]
    assert load_settings(environ).billing_mode == "disabled"


def _forge(args: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run([sys.executable, "-m", "forge", *args], env={**keep, **environ},
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=False)


@pytest.mark.no_store
def test_config_check_and_serve_refuse_stub_billing_in_prod(tmp_path: Path) -> None:
    environ = prod_environ(tmp_path / "storage", BILLING_MODE="stub")
    check = _forge(["config", "check"], environ)
    assert check.returncode == 1
    assert "BILLING_MODE=stub is forbidden when FORGE_ENV=prod" in check.stderr
    # --port 9: nothing may bind there; the service must refuse before it tries.
    serve = _forge(["serve", "spawn", "--host", "127.0.0.1", "--port", "9"], environ)
    assert serve.returncode != 0
    assert "BILLING_MODE=stub is forbidden" in serve.stderr + serve.stdout
    assert "Traceback" not in serve.stderr
