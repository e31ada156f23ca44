"""`forge serve` as an operator runs it: refuses bad environments before binding, serves good ones."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from forge.bus import NatsServer
from forge.bus.ports import free_port
from forge.config.secrets import DEV_SECRETS_FILE
from forge.content import content_path
from forge.services.common.serving import ServiceName

from .conftest import (
    NATS_PASSWORDS,
    SECRETS,
    TEMPLATE_FIXTURES,
    prod_environ,
    with_signing_key,
)

FORGE = [sys.executable, "-m", "forge"]




def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SAT_", "ET_", "RECEIPT_", "OPERATOR_", "FORGE_", "DEV_", "ALLOW_"))}
    env.update(STORAGE_ROOT=str(tmp_path / "storage"), **extra)
    return env


def port_is_bound(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("service", list(ServiceName), ids=lambda s: s.value)
@pytest.mark.no_store
def test_prod_without_secrets_exits_naming_all_four(tmp_path: Path, service: ServiceName) -> None:
    port = free_port()
    proc = subprocess.run([*FORGE, "serve", service.value, "--port", str(port)],
                          env=run_env(tmp_path, FORGE_ENV="prod"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    for name in SECRETS:
        assert f"missing required secret {name}" in proc.stderr
    # Its NATS password, missing too, in the same message (audit AS: named only on the
    # next try, once the secrets were set); another service's is not this one's problem.
    assert proc.stderr.count("missing NATS credentials") == 1
    assert f"missing NATS credentials of {service.value}" in proc.stderr
    assert not port_is_bound(port)


@pytest.mark.parametrize("service", list(ServiceName), ids=lambda s: s.value)
@pytest.mark.parametrize("flag", ["DEV_ALLOW_XPLAN", "ALLOW_FREE_DEFAULT"])
@pytest.mark.no_store
def test_prod_with_dev_flag_exits_naming_it(
    tmp_path: Path, service: ServiceName, flag: str
) -> None:
    proc = subprocess.run([*FORGE, "serve", service.value, "--port", str(free_port())],
                          env=run_env(tmp_path, FORGE_ENV="production", **SECRETS, **{flag: "true"}),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{flag}=true is forbidden when FORGE_ENV=prod" in proc.stderr
    assert "missing required secret" not in proc.stderr
    for value in SECRETS.values():
        assert value not in proc.stderr and value not in proc.stdout


@pytest.mark.no_store
def test_unknown_forge_env_refused(tmp_path: Path) -> None:
    proc = subprocess.run([*FORGE, "serve", "spawn", "--port", str(free_port())],
                          env=run_env(tmp_path, FORGE_ENV="banana", **SECRETS),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "FORGE_ENV has an unknown value" in proc.stderr


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"service exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            resp = httpx.get(url, timeout=1)
            if resp.status_code == 200:
                return resp
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready in {timeout}s")


@pytest.mark.parametrize("service", list(ServiceName), ids=lambda s: s.value)
@pytest.mark.parametrize("env_name", ["prod", "dev"])
@pytest.mark.usefixtures("sqlite_only_store")
def test_serves_ready_and_stops_gracefully(
    tmp_path: Path, service: ServiceName, env_name: str, nats: NatsServer
) -> None:
    port = free_port()
    if env_name == "prod":
        with_signing_key(tmp_path / "storage")
    extra = {**(SECRETS if env_name == "prod" else {}), **nats.client_env(),
             "FORGE_TEMPLATE_DIR": str(TEMPLATE_FIXTURES)}
    proc = subprocess.Popen([*FORGE, "serve", service.value, "--port", str(port)],
                            env=run_env(tmp_path, FORGE_ENV=env_name, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        resp = wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        assert resp.json()["status"] == "ready"
        # The detail is the operator's: with the token (dev: the generated one).
        token = SECRETS["OPERATOR_TOKEN"] if env_name == "prod" else json.loads(
            (tmp_path / "storage" / DEV_SECRETS_FILE).read_text())["OPERATOR_TOKEN"]
        resp = httpx.get(f"http://127.0.0.1:{port}/readyz",
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)
        config = resp.json()["checks"]["config"]["detail"]
        assert config["forge_env"] == env_name
        assert set(config["keyring"]) == set(SECRETS)
        assert all(len(k["current"]) == 16 for k in config["keyring"].values())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Application shutdown complete" in stderr
    for value in SECRETS.values():
        assert value not in stderr
    if env_name == "dev":
        assert "using generated secrets" in stderr


def test_config_check_reports_problems_and_ok(tmp_path: Path) -> None:
    bad = subprocess.run([*FORGE, "config", "check"], env=run_env(tmp_path, FORGE_ENV="staging"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.count("missing required secret") == 4
    assert bad.stderr.count("missing NATS credentials") == 3  # every problem at once
    # An unknown FORGE_ENV is the one problem, as a service reports it: whether anything
    # else is missing depends on what it should have been (audit BE).
    unknown = subprocess.run([*FORGE, "config", "check"],
                             env=run_env(tmp_path, FORGE_ENV="prdo"),
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1
    assert "FORGE_ENV has an unknown value" in unknown.stderr
    assert "NATS" not in unknown.stderr and "missing required secret" not in unknown.stderr
    # The secrets but no NATS passwords: no service would start, so not "OK" (exit 1
    # naming each variable); a machine running one service checks that one's alone.
    no_nats = subprocess.run([*FORGE, "config", "check"],
                             env=run_env(tmp_path, FORGE_ENV="staging", **SECRETS),
                             capture_output=True, text=True, timeout=60)
    assert no_nats.returncode == 1 and "configuration OK" not in no_nats.stdout
    for var in NATS_PASSWORDS:
        assert var in no_nats.stderr
    one = subprocess.run([*FORGE, "config", "check", "--service", "orchestrator"],
                         env=run_env(tmp_path, FORGE_ENV="staging", **SECRETS,
                                     NATS_ORCHESTRATOR_PASSWORD=NATS_PASSWORDS[
                                         "NATS_ORCHESTRATOR_PASSWORD"]),
                         capture_output=True, text=True, timeout=60)
    assert one.returncode == 0, one.stderr
    assert "signing key" not in one.stdout  # the scoreboard does not run here
    good = subprocess.run([*FORGE, "config", "check"],
                          env=run_env(tmp_path, FORGE_ENV="staging", **SECRETS,
                                      **NATS_PASSWORDS),
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert "configuration OK" in good.stdout
    # Outside dev no key is made for the scoreboard: said here, not after forge up's
    # --ready-timeout as its failed signing_key check.
    assert ("warning: the scoreboard will start but not score: no loadable Ed25519 signing "
            "key in ") in good.stdout
    assert "run `forge keys generate`" in good.stdout
    for value in SECRETS.values():
        assert value not in good.stdout


@pytest.mark.usefixtures("sqlite_only_store")
def test_forge_up_says_it_will_stop_everything_without_a_signing_key(tmp_path: Path) -> None:
    """Runbook first steps (secrets, config check, `forge up --env-file`) outside dev:
    `forge up` warned "the scoreboard will start but not score", then waited its 120 s
    --ready-timeout for the scoreboard's signing_key check and stopped everything. It now
    says so, and that a key made meanwhile lets it come up (checked by hand: it does)."""
    from forge.cli.config_check import up_key_warning
    from forge.config import load_settings

    storage = tmp_path / "storage"
    settings = load_settings(prod_environ(storage))
    said = up_key_warning(settings, 120.0)
    assert said is not None and said.startswith("the scoreboard will start but not score")
    assert said.endswith("; forge up waits 120 s (--ready-timeout) for it, then stops "
                         "everything: run `forge keys generate` on this storage root now "
                         "(another shell), or Ctrl-C")
    with_signing_key(storage)
    assert up_key_warning(settings, 120.0) is None


def test_config_check_refuses_the_policy_bundle_the_services_refuse(tmp_path: Path) -> None:
    """Runbook: `forge config check` exits 1 naming every problem. An OPA_POLICY_HASH that
    the loaded policies do not hash to, or a FORGE_POLICY_DIR spawn_service and the
    orchestrator cannot load, stops both at start; it said "configuration OK" (audit CG).
    The scoreboard evaluates no policy: checked alone, it is fine."""
    base = {"FORGE_ENV": "staging", **SECRETS, **NATS_PASSWORDS}
    pinned = subprocess.run([*FORGE, "config", "check"],
                            env=run_env(tmp_path, **base, OPA_POLICY_HASH="deadbeef"),
                            capture_output=True, text=True, timeout=60)
    assert pinned.returncode == 1 and "configuration OK" not in pinned.stdout
    assert "policy bundle hash mismatch" in pinned.stderr and "deadbeef" in pinned.stderr
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "stray.json").write_text("{}")
    stray = subprocess.run([*FORGE, "config", "check", "--service", "spawn"],
                           env=run_env(tmp_path, **base, FORGE_POLICY_DIR=str(policies)),
                           capture_output=True, text=True, timeout=60)
    assert stray.returncode == 1 and f"FORGE_POLICY_DIR {policies}" in stray.stderr
    alone = subprocess.run([*FORGE, "config", "check", "--service", "scoreboard"],
                           env=run_env(tmp_path, **base, OPA_POLICY_HASH="deadbeef"),
                           capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0, alone.stderr
    # Every service (the scoreboard too) loads FORGE_TEMPLATE_DIR and refuses it for one
    # invalid template (a subnet wider than /24 an earlier release accepted): it said
    # "configuration OK" and the three restarted in a loop.
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "netplus.yaml").write_text((content_path("templates") / "netplus.yaml")
                                            .read_text().replace("10.61.1.0/24", "10.61.0.0/23"))
    wide = subprocess.run([*FORGE, "config", "check", "--service", "scoreboard"],
                          env=run_env(tmp_path, **base, FORGE_TEMPLATE_DIR=str(templates)),
                          capture_output=True, text=True, timeout=60)
    assert wide.returncode == 1 and "configuration OK" not in wide.stdout, wide.stdout
    assert f"FORGE_TEMPLATE_DIR: {templates}: invalid template (1 problem(s)):\n    " \
           'netplus.yaml: spec.network.subnets[0].cidr: prefix length must be between /24 ' \
           'and /29, got "10.61.0.0/23"' in wide.stderr, wide.stderr


def test_config_check_refuses_the_plans_file_the_services_refuse(tmp_path: Path) -> None:
    """spawn_service and the orchestrator load FORGE_PLANS_FILE at start and refuse one
    they cannot read or that is invalid; `forge config check` said "configuration OK" for
    a missing file, /dev/zero or a file without plans. The scoreboard reads no plans."""
    base = {"FORGE_ENV": "staging", **SECRETS, **NATS_PASSWORDS}
    empty = tmp_path / "plans.yaml"
    empty.write_text("plans: {}\n")
    for plans, why in ((tmp_path / "missing.yaml", "file not found"),
                       (Path("/dev/zero"), "is a device, not a regular file"),
                       (empty, "must have a non-empty 'plans' mapping")):
        env = run_env(tmp_path, **base, FORGE_PLANS_FILE=str(plans))
        for service in ("spawn", "orchestrator"):
            bad = subprocess.run([*FORGE, "config", "check", "--service", service], env=env,
                                 capture_output=True, text=True, timeout=60)
            assert bad.returncode == 1 and "configuration OK" not in bad.stdout, bad.stdout
            assert "FORGE_PLANS_FILE:" in bad.stderr and str(plans) in bad.stderr
            assert why in bad.stderr
        alone = subprocess.run([*FORGE, "config", "check", "--service", "scoreboard"],
                               env=env, capture_output=True, text=True, timeout=60)
        assert alone.returncode == 0, alone.stderr


def test_secrets_generate_gives_a_valid_env_block(tmp_path: Path) -> None:
    out = subprocess.run([*FORGE, "secrets", "generate"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    pairs = dict(line.split("=", 1) for line in out.splitlines() if not line.startswith("#"))
    assert set(pairs) == set(SECRETS)
    assert len(set(pairs.values())) == 4 and all(len(v) >= 32 for v in pairs.values())
    check = subprocess.run([*FORGE, "config", "check"],
                           env=run_env(tmp_path, FORGE_ENV="prod", **pairs),
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "NATS_SPAWN_PASSWORD" in check.stderr  # no NATS ones
    out = subprocess.run([*FORGE, "secrets", "generate", "--nats"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    pairs = dict(line.split("=", 1) for line in out.splitlines() if not line.startswith("#"))
    assert set(pairs) == set(SECRETS) | set(NATS_PASSWORDS)
    check = subprocess.run([*FORGE, "config", "check"],
                           env=run_env(tmp_path, FORGE_ENV="prod", **pairs),
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    nxt = subprocess.run([*FORGE, "secrets", "generate", "--suffix", "next"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "SAT_HMAC_SECRET_NEXT=" in nxt


def test_version() -> None:
    out = subprocess.run([*FORGE, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("forge ")


def test_all_three_serve_from_one_libpq_style_postgres_url(
    tmp_path: Path, nats: NatsServer, postgres_url: str
) -> None:
    # What a managed-database provider hands out: FORGE_DB_URL=postgres://… (no driver, the
    # libpq scheme SQLAlchemy has no dialect for). The three services start on that one
    # database, each reporting its store check healthy.
    with_signing_key(tmp_path / "storage")
    plain = postgres_url.replace("postgresql+psycopg://", "postgres://", 1)
    env = run_env(tmp_path, FORGE_ENV="prod", FORGE_DB_URL=plain, **SECRETS,
                  **nats.client_env(), FORGE_TEMPLATE_DIR=str(TEMPLATE_FIXTURES))
    procs = {}
    try:
        for service in ServiceName:
            port = free_port()
            procs[service] = (port, subprocess.Popen(
                [*FORGE, "serve", service.value, "--port", str(port)], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for _service, (port, proc) in procs.items():
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
            resp = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5, headers={
                "Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"})
            assert resp.json()["checks"]["store"]["ok"] is True
    finally:
        for _, proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for service, (_, proc) in procs.items():
            _, stderr = proc.communicate(timeout=30)
            assert proc.returncode == 0, (service, stderr[-2000:])
            assert "NoSuchModuleError" not in stderr and "psycopg2" not in stderr


@pytest.mark.parametrize("service", list(ServiceName), ids=lambda s: s.value)
@pytest.mark.no_store
def test_a_state_store_that_cannot_be_reached_is_named_in_one_line(
        tmp_path: Path, service: ServiceName) -> None:
    """A PostgreSQL down at a service's start: the service died with SQLAlchemy's traceback
    inside a JSON log record and uvicorn's "Application startup failed. Exiting." last, so
    `forge up` reported `exited with code 3 (error: Application startup failed. Exiting.)`
    and an operator learnt nothing of the store. Now the last line names the store's error
    and FORGE_DB_URL (never its password), exit 1, and forge up shows that line."""
    password = "pw-" + os.urandom(8).hex()
    with socket.socket() as closed:  # bound, never listening: every connection is refused
        closed.bind(("127.0.0.1", 0))
        db_url = f"postgresql+psycopg://forge:{password}@127.0.0.1:{closed.getsockname()[1]}/f"
        proc = subprocess.run([*FORGE, "serve", service.value, "--port", str(free_port())],
                              env=run_env(tmp_path, FORGE_DB_URL=db_url), capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"forge serve {service.value}: the state store cannot be used just "
                           "now (OperationalError: connection failed: "), last
    assert "check that the database FORGE_DB_URL names is up and reachable" in last
    assert "Traceback" not in proc.stderr and "Application startup failed" not in proc.stderr
    assert password not in proc.stderr
