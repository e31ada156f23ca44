"""Each service's NATS password: from the environment or `_FILE`, rotation values, dev defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config import ConfigError, load_settings
from forge.services.common.bus import bus_auth, bus_credentials

SECRETS = {
    "SAT_HMAC_SECRET": "s" * 40,
    "ET_HMAC_SECRET": "e" * 40,
    "RECEIPT_HMAC_SECRET": "r" * 40,
    "OPERATOR_TOKEN": "o" * 40,
}
SPAWN_PW = "spawn-nats-password-0123456789-0123456789"


def prod(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"FORGE_ENV": "prod", "STORAGE_ROOT": str(tmp_path), **SECRETS, **extra}


def test_prod_service_without_its_password_names_the_variable(tmp_path: Path) -> None:
    settings = load_settings(prod(tmp_path, NATS_SPAWN_PASSWORD=SPAWN_PW))
    assert bus_credentials(settings, "spawn").password == SPAWN_PW
    with pytest.raises(ConfigError) as info:
        bus_credentials(settings, "orchestrator")
    message = str(info.value)
    assert "NATS_ORCHESTRATOR_PASSWORD" in message and "_FILE" in message
    assert SPAWN_PW not in message and "o" * 40 not in message


def test_password_from_file_and_conflicts(tmp_path: Path) -> None:
    secret_file = tmp_path / "nats-spawn"
    secret_file.write_text(SPAWN_PW + "\n")
    settings = load_settings(prod(tmp_path, NATS_SPAWN_PASSWORD_FILE=str(secret_file)))
    assert settings.nats_password("spawn") == SPAWN_PW
    with pytest.raises(ConfigError, match="NATS_SPAWN_PASSWORD and NATS_SPAWN_PASSWORD_FILE"):
        load_settings(prod(tmp_path, NATS_SPAWN_PASSWORD=SPAWN_PW,
                           NATS_SPAWN_PASSWORD_FILE=str(secret_file)))
    with pytest.raises(ConfigError, match="NATS_SPAWN_PASSWORD_FILE: cannot read"):
        load_settings(prod(tmp_path, NATS_SPAWN_PASSWORD_FILE=str(tmp_path / "missing")))


def test_short_password_refused_outside_dev(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NATS_SCOREBOARD_PASSWORD_NEXT is shorter than 32"):
        load_settings(prod(tmp_path, NATS_SCOREBOARD_PASSWORD_NEXT="short"))


def test_rotation_values_are_accepted_by_the_server_config(tmp_path: Path) -> None:
    nxt = "spawn-next-password-0123456789-0123456789"
    prev = "spawn-prev-password-0123456789-0123456789"
    settings = load_settings(prod(tmp_path, NATS_SPAWN_PASSWORD=SPAWN_PW,
                                  NATS_SPAWN_PASSWORD_NEXT=nxt,
                                  NATS_SPAWN_PASSWORD_PREVIOUS=prev))
    auth = bus_auth(settings)
    assert auth.passwords == {"spawn": (SPAWN_PW, nxt, prev)}
    assert bus_credentials(settings, "spawn").password == SPAWN_PW  # clients use the current
    for value in (SPAWN_PW.encode(), nxt.encode(), prev.encode()):
        assert value in settings.secret_values()  # redacted from logs like every secret


def test_dev_generates_distinct_passwords_once(tmp_path: Path) -> None:
    first = load_settings({"STORAGE_ROOT": str(tmp_path)})
    second = load_settings({"STORAGE_ROOT": str(tmp_path)})
    values = {i: first.nats_password(i) for i in ("spawn", "orchestrator", "scoreboard")}
    assert len(set(values.values())) == 3
    assert values == {i: second.nats_password(i) for i in values}
    assert any("NATS_SPAWN_PASSWORD" in w for w in first.warnings)
    explicit = load_settings({"STORAGE_ROOT": str(tmp_path), "NATS_SPAWN_PASSWORD": "dev-pw"})
    assert explicit.nats_password("spawn") == "dev-pw"


def test_only_dev_accepts_a_bus_without_authentication(tmp_path: Path) -> None:
    prod_settings = load_settings(prod(tmp_path, NATS_SPAWN_PASSWORD=SPAWN_PW))
    assert bus_credentials(prod_settings, "spawn").require_auth is True
    dev_settings = load_settings({"STORAGE_ROOT": str(tmp_path)})
    assert bus_credentials(dev_settings, "spawn").require_auth is False
