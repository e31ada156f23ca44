"""Operator commands around bus credentials: generate, check, server config, refusal to start."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from forge.bus.permissions import permissions, user_name

FORGE = [sys.executable, "-m", "forge"]
SECRETS = {name: name.lower().replace("_", "-") + "-0123456789-0123456789-abcdef"
           for name in ("SAT_HMAC_SECRET", "ET_HMAC_SECRET", "RECEIPT_HMAC_SECRET",
                        "OPERATOR_TOKEN")}
NATS = {f"NATS_{i.upper()}_PASSWORD": f"{i}-nats-password-0123456789-0123456789"
        for i in ("spawn", "orchestrator", "scoreboard")}


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SAT_", "ET_", "RECEIPT_", "OPERATOR_", "FORGE_", "NATS_"))}
    base.update(STORAGE_ROOT=str(tmp_path / "storage"), FORGE_ENV="prod", **env)
    return subprocess.run([*FORGE, *args], env=base, capture_output=True, text=True, timeout=60)


def test_generate_with_nats_gives_seven_distinct_secrets(tmp_path: Path) -> None:
    out = subprocess.run([*FORGE, "secrets", "generate", "--nats"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    pairs = dict(line.split("=", 1) for line in out.splitlines() if not line.startswith("#"))
    assert set(pairs) == set(SECRETS) | set(NATS)
    assert len(set(pairs.values())) == 7 and all(len(v) >= 32 for v in pairs.values())
    check = run(tmp_path, "config", "check", **pairs)
    assert check.returncode == 0, check.stderr
    # Outside dev the only warning is the runbook's next step: the verdict signing key.
    warnings = [line for line in check.stdout.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "forge keys generate" in warnings[0], check.stdout
    assert run(tmp_path, "keys", "generate", **pairs).returncode == 0
    check = run(tmp_path, "config", "check", **pairs)
    assert check.returncode == 0 and "warning" not in check.stdout, check.stdout
    assert not any(value in check.stdout for value in pairs.values())


def test_auth_config_lists_each_accepted_password_with_its_permissions(tmp_path: Path) -> None:
    nxt = "spawn-next-password-0123456789-0123456789"
    proc = run(tmp_path, "nats", "auth-config", **SECRETS, **NATS,
               NATS_SPAWN_PASSWORD_NEXT=nxt)
    assert proc.returncode == 0, proc.stderr
    users = json.loads(proc.stdout.removeprefix("authorization "))["users"]
    by_user = {u["user"]: u for u in users}
    for identity in ("spawn", "orchestrator", "scoreboard"):
        entry = by_user[user_name(identity, NATS[f"NATS_{identity.upper()}_PASSWORD"])]
        assert entry["permissions"] == permissions(identity)
    assert by_user[user_name("spawn", nxt)]["password"] == nxt
    assert len(users) == 4  # no admin user outside the embedded server


def test_auth_config_without_a_password_names_it(tmp_path: Path) -> None:
    proc = run(tmp_path, "nats", "auth-config", **SECRETS, NATS_SPAWN_PASSWORD=NATS[
        "NATS_SPAWN_PASSWORD"])
    assert proc.returncode == 1
    assert "NATS_ORCHESTRATOR_PASSWORD" in proc.stderr
    assert NATS["NATS_SPAWN_PASSWORD"] not in proc.stderr + proc.stdout


@pytest.mark.parametrize("service", ["spawn", "orchestrator", "scoreboard"])
@pytest.mark.no_store
def test_service_refuses_to_start_without_its_nats_password(tmp_path: Path, service: str) -> None:
    """...before it binds its port, as the runbook says: with the port taken too, the
    operator reads the missing password, not "cannot listen"."""
    others = {k: v for k, v in NATS.items() if k != f"NATS_{service.upper()}_PASSWORD"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        proc = run(tmp_path, "serve", service, "--port", str(port), **SECRETS, **others)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"NATS_{service.upper()}_PASSWORD" in proc.stderr
    assert "cannot listen" not in proc.stderr
    for value in (*SECRETS.values(), *others.values()):
        assert value not in proc.stderr + proc.stdout
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.no_store
def test_up_outside_dev_names_every_missing_nats_password(tmp_path: Path) -> None:
    proc = run(tmp_path, "up", "--storage", str(tmp_path / "storage"), **SECRETS,
               NATS_SCOREBOARD_PASSWORD=NATS["NATS_SCOREBOARD_PASSWORD"])
    assert proc.returncode == 1
    assert "NATS_SPAWN_PASSWORD" in proc.stderr and "NATS_ORCHESTRATOR_PASSWORD" in proc.stderr
    assert NATS["NATS_SCOREBOARD_PASSWORD"] not in proc.stderr + proc.stdout
    assert not (tmp_path / "storage" / "nats").exists()  # no server was started


def test_reprocess_speaks_as_the_scoreboard_and_needs_its_password(tmp_path: Path) -> None:
    others = {k: v for k, v in NATS.items() if k != "NATS_SCOREBOARD_PASSWORD"}
    proc = run(tmp_path, "completions", "reprocess", "--all", **SECRETS, **others)
    assert proc.returncode == 1
    assert "NATS_SCOREBOARD_PASSWORD" in proc.stderr
    assert not any(value in proc.stderr + proc.stdout for value in others.values())
