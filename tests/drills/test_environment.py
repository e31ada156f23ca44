"""Runbook, "Required environment variables" and "Environment behavior": each service started
the way an operator starts it (`forge serve NAME`), under each FORGE_ENV.

Outside dev a missing secret or a dev-only flag stops the service before it binds its port,
with a message naming the variable (never a secret value); dev starts with none of them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import pytest
from filelock import FileLock

from forge.bus import NatsServer
from forge.config.secrets import DEV_SECRETS_FILE

from ..conftest import TEMPLATE_FIXTURES
from ..live_server import free_port
from .conftest import (
    PYTHON,
    REPO,
    SECRET_NAMES,
    SERVICES,
    Service,
    clean_environ,
    fresh_secrets,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sqlite_only_store")]  # about 40 s of `forge serve` processes, run 4 at a time

NON_DEV = ("staging", "prod")
FLAGS = ("DEV_ALLOW_XPLAN", "ALLOW_FREE_DEFAULT")


@dataclass(frozen=True)
class Refusal:
    """What one refused start printed, and whether it got as far as binding its port."""

    returncode: int
    stdout: str
    stderr: str
    tried_to_bind: bool
    given: dict[str, str]


def serve_refused(service: str, env: dict[str, str], given: dict[str, str]) -> Refusal:
    """`forge serve SERVICE` expected to refuse: it must exit on its own, quickly.

    The test holds the port itself: a service that got as far as binding would report the
    address in use; one that refuses first never tries.
    """
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run([PYTHON, "-m", "forge", "serve", service, "--port", str(port)],
                              env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    tried = "attempting to bind" in proc.stderr or "address already in use" in \
        proc.stderr.lower()
    return Refusal(proc.returncode, proc.stdout, proc.stderr, tried, given)


def config_check(env: dict[str, str]) -> Refusal:
    proc = subprocess.run([PYTHON, "-m", "forge", "config", "check"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    return Refusal(proc.returncode, proc.stdout, proc.stderr, False, {})


def base_env(root: Path, forge_env: str) -> dict[str, str]:
    return {**clean_environ(), "FORGE_ENV": forge_env, "STORAGE_ROOT": str(root / "s"),
            "FORGE_TEMPLATE_DIR": str(TEMPLATE_FIXTURES)}


Case = tuple[str, ...]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[Case, Refusal]:
    """Every refused start of this module, run a few at a time (each is a fresh process),
    once per test run: the module's tests are spread over the xdist workers, and each one
    started the same 80 refused services again (about 100 s of both cores). The first
    worker to ask records them in the run's own temporary folder; the others read them."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # no shared folder of this run only
        return _all_refusals(tmp_path_factory.mktemp("refusals"))
    shared = tmp_path_factory.getbasetemp().parent / "environment-refusals.json"
    with FileLock(f"{shared}.lock"):
        if shared.exists():
            return {tuple(case.split("|")): Refusal(**fields) for case, fields
                    in json.loads(shared.read_text()).items()}
        found = _all_refusals(tmp_path_factory.mktemp("refusals"))
        shared.write_text(json.dumps({"|".join(case): asdict(r) for case, r in found.items()}))
        return found


def _all_refusals(root: Path) -> dict[Case, Refusal]:
    jobs: dict[Case, Callable[[], Refusal]] = {}
    for forge_env in NON_DEV:
        for missing in SECRET_NAMES:
            given = fresh_secrets()
            env = {**base_env(root, forge_env), **given}
            del env[missing]
            for service in SERVICES:
                jobs[(service, forge_env, missing)] = partial(serve_refused, service, env, given)
            jobs[("config-check", forge_env, missing)] = partial(config_check, env)
        for flag in FLAGS:
            given = fresh_secrets()
            env = {**base_env(root, forge_env), **given, flag: "true"}
            for service in SERVICES:
                jobs[(service, forge_env, flag)] = partial(serve_refused, service, env, given)
    for service in SERVICES:
        given = fresh_secrets()
        jobs[(service, "banana")] = partial(serve_refused, service,
                                            {**base_env(root, "banana"), **given}, given)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(job) for case, job in jobs.items()}
        return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize("missing", SECRET_NAMES)
@pytest.mark.parametrize("forge_env", NON_DEV)
@pytest.mark.parametrize("service", SERVICES)
def test_non_dev_refuses_each_missing_secret(refusals: dict[Case, Refusal], service: str,
                                             forge_env: str, missing: str) -> None:
    got = refusals[(service, forge_env, missing)]
    assert got.returncode == 1, got.stdout + got.stderr
    err = got.stderr
    assert f"forge serve {service}: configuration invalid (FORGE_ENV={forge_env})" in err
    assert f"missing required secret {missing} (set {missing} or {missing}_FILE)" in err
    # Only the one that is missing is named; no secret value is ever printed.
    assert err.count("missing required secret") == 1
    assert not any(value in err + got.stdout for value in got.given.values())
    assert not got.tried_to_bind
    # The runbook's pre-flight check (`forge config check`) names it too, exit 1.
    check = refusals[("config-check", forge_env, missing)]
    assert check.returncode == 1
    assert missing in check.stdout + check.stderr


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("forge_env", NON_DEV)
@pytest.mark.parametrize("service", SERVICES)
def test_non_dev_refuses_each_forbidden_flag(refusals: dict[Case, Refusal], service: str,
                                             forge_env: str, flag: str) -> None:
    got = refusals[(service, forge_env, flag)]
    assert got.returncode == 1, got.stdout + got.stderr
    assert f"{flag}=true is forbidden when FORGE_ENV={forge_env} (dev only)" in got.stderr
    other = next(f for f in FLAGS if f != flag)
    assert other not in got.stderr and "missing required secret" not in got.stderr
    assert not any(value in got.stderr + got.stdout for value in got.given.values())
    assert not got.tried_to_bind


@pytest.fixture(scope="module")
def dev_nats() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.root  # the orchestrator's readiness checks the real sandbox runtime
@pytest.mark.parametrize("service", SERVICES)
def test_dev_starts_without_secrets(tmp_path: Path, service: str, dev_nats: NatsServer) -> None:
    env = {**base_env(tmp_path, "dev"), **dev_nats.client_env(), "DEV_ALLOW_XPLAN": "true",
           "ALLOW_FREE_DEFAULT": "true", "FORGE_RUNTIME_PREFIX": "v" + str(free_port())[-3:]}
    svc = Service(service, free_port(), tmp_path / f"{service}.log")
    svc.start(env)
    try:
        svc.wait_ready(60)
        status, body = svc.readyz()
        assert status == 200 and body["status"] == "ready"
    finally:
        assert svc.stop() == 0
    log = svc.log()
    assert "dev mode: using generated secrets for " + ", ".join(SECRET_NAMES) in log
    # Generated once, kept under the storage root (0600) so every service shares them.
    kept = tmp_path / "s" / DEV_SECRETS_FILE
    assert kept.stat().st_mode & 0o077 == 0
    generated = json.loads(kept.read_text())
    assert set(generated) >= set(SECRET_NAMES)
    assert not any(str(generated[name]) in log for name in SECRET_NAMES)


@pytest.mark.parametrize("service", SERVICES)
def test_unknown_forge_env_refused(refusals: dict[Case, Refusal], service: str) -> None:
    got = refusals[(service, "banana")]
    assert got.returncode == 1
    assert "configuration invalid (FORGE_ENV=banana)" in got.stderr
    assert "FORGE_ENV has an unknown value; allowed: " in got.stderr
    allowed = got.stderr.split("allowed: ", 1)[1]
    for value in ("dev", "development", "staging", "prod", "production"):
        assert value in allowed
    assert not got.tried_to_bind
