"""The runbook's FORGE_ENV rules, as every service applies them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from forge.config import ConfigError, ForgeEnv, is_truthy, load_settings
from forge.config.keyring import derive_kid

REQUIRED = ("SAT_HMAC_SECRET", "ET_HMAC_SECRET", "RECEIPT_HMAC_SECRET", "OPERATOR_TOKEN")


def strong(name: str) -> str:
    return f"{name.lower()}-value-that-is-long-enough-0123456789"


def prod_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"FORGE_ENV": "prod", "STORAGE_ROOT": str(tmp_path)}
    env.update({n: strong(n) for n in REQUIRED})
    env.update(extra)
    return env


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " yes ", "On"])
def test_truthy_values(value: str) -> None:
    assert is_truthy(value)


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "off", "enabled", "2"])
def test_non_truthy_values(value: str | None) -> None:
    assert not is_truthy(value)


@pytest.mark.parametrize("value", ["staging", "prod", "production", "PROD"])
def test_non_dev_without_secrets_names_all_four(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"FORGE_ENV": value, "STORAGE_ROOT": str(tmp_path)})
    text = str(err.value)
    for name in REQUIRED:
        assert f"missing required secret {name}" in text
    assert len(err.value.problems) == 4


def test_missing_one_secret_names_only_it(tmp_path: Path) -> None:
    env = prod_env(tmp_path)
    del env["ET_HMAC_SECRET"]
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.problems == [
        "missing required secret ET_HMAC_SECRET (set ET_HMAC_SECRET or ET_HMAC_SECRET_FILE)"
    ]


@pytest.mark.parametrize("flag", ["DEV_ALLOW_XPLAN", "ALLOW_FREE_DEFAULT"])
@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_dev_only_flags_refused_outside_dev(tmp_path: Path, flag: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(prod_env(tmp_path, **{flag: value}))
    assert err.value.problems == [f"{flag}=true is forbidden when FORGE_ENV=prod (dev only)"]


def test_flags_false_are_fine_outside_dev(tmp_path: Path) -> None:
    settings = load_settings(prod_env(tmp_path, DEV_ALLOW_XPLAN="false", ALLOW_FREE_DEFAULT="0"))
    assert settings.env is ForgeEnv.PROD
    assert not settings.dev_allow_xplan and not settings.allow_free_default


@pytest.mark.parametrize("env_name", ["dev", "prod"])
@pytest.mark.parametrize("flag", ["DEV_ALLOW_XPLAN", "ALLOW_FREE_DEFAULT"])
@pytest.mark.parametrize("value", ["enabled", "maybe", "2", "ture"])
def test_a_dev_flag_that_is_not_a_boolean_is_named(tmp_path: Path, env_name: str, flag: str,
                                                    value: str) -> None:
    """A misspelt flag is not silently read as off: in dev the operator who meant it on
    would get no word why it does nothing, and outside dev it may have meant "true"."""
    env = prod_env(tmp_path, FORGE_ENV=env_name, **{flag: value})
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.problems == [
        f"{flag} is not a boolean: set it to true or false (1/true/yes/on or 0/false/no/off),"
        " or unset it"]
    assert value not in str(err.value)


def test_all_problems_reported_together(tmp_path: Path) -> None:
    env = {"FORGE_ENV": "staging", "STORAGE_ROOT": str(tmp_path), "DEV_ALLOW_XPLAN": "on",
           "ALLOW_FREE_DEFAULT": "true", "SAT_HMAC_SECRET": "short"}
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    problems = err.value.problems
    assert "SAT_HMAC_SECRET is shorter than 32 bytes" in problems
    assert sum("forbidden" in p for p in problems) == 2
    assert sum("missing required secret" in p for p in problems) == 3


def test_error_never_prints_a_secret_value(tmp_path: Path) -> None:
    env = prod_env(tmp_path, SAT_HMAC_SECRET="tiny-but-secret", DEV_ALLOW_XPLAN="true")
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    text = str(err.value)
    assert "tiny-but-secret" not in text
    for name in REQUIRED:
        assert strong(name) not in text


@pytest.mark.parametrize("value", ["banana", "test", "devel", "prod2"])
def test_unknown_forge_env_is_an_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"FORGE_ENV": value, "STORAGE_ROOT": str(tmp_path)})
    assert "FORGE_ENV has an unknown value" in str(err.value)
    assert "allowed: dev, development, staging, prod, production" in str(err.value)


@pytest.mark.no_store
def test_prod_with_all_secrets_loads(tmp_path: Path) -> None:
    settings = load_settings(prod_env(tmp_path))
    assert settings.sat.current == strong("SAT_HMAC_SECRET").encode()
    assert settings.operator.matches(strong("OPERATOR_TOKEN"))
    assert settings.warnings == ()
    assert settings.db_url == f"sqlite:///{tmp_path / 'forge.db'}"


def test_secret_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "sat"
    secret_file.write_text(strong("from-file") + "\n")
    env = prod_env(tmp_path)
    del env["SAT_HMAC_SECRET"]
    env["SAT_HMAC_SECRET_FILE"] = str(secret_file)
    assert load_settings(env).sat.current == strong("from-file").encode()


@pytest.mark.parametrize("env_name", ["dev", "prod"])
@pytest.mark.parametrize("value", [strong("sat") + "\n", " " + strong("sat"), " " * 40])
def test_a_secret_with_surrounding_whitespace_in_the_environment_is_named(
        tmp_path: Path, env_name: str, value: str) -> None:
    """The same secret from the environment (with the newline a secret manager left on it)
    and from a _FILE (trimmed) made two different keys: services given it the two ways
    disagreed. And forty blanks passed as a secret. Both are refused, naming the variable."""
    env = prod_env(tmp_path, FORGE_ENV=env_name, SAT_HMAC_SECRET=value)
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.problems == [
        "SAT_HMAC_SECRET begins or ends with whitespace (a newline left by the secret "
        "manager?): remove it, or use SAT_HMAC_SECRET_FILE"]
    assert value.strip() not in str(err.value) or not value.strip()


def test_a_secret_given_by_file_and_by_environment_is_one_key(tmp_path: Path) -> None:
    secret_file = tmp_path / "sat"
    secret_file.write_text(strong("sat") + "\n")
    by_file = prod_env(tmp_path, SAT_HMAC_SECRET_FILE=str(secret_file))
    del by_file["SAT_HMAC_SECRET"]
    by_env = prod_env(tmp_path, SAT_HMAC_SECRET=strong("sat"))
    assert load_settings(by_file).sat.current == load_settings(by_env).sat.current


def test_a_short_secret_from_a_file_names_the_file_variable(tmp_path: Path) -> None:
    # The value came from SAT_HMAC_SECRET_FILE and SAT_HMAC_SECRET itself is not set: a
    # problem naming SAT_HMAC_SECRET alone sent the operator to the wrong place.
    secret_file = tmp_path / "sat"
    secret_file.write_text("short\n")
    env = prod_env(tmp_path)
    del env["SAT_HMAC_SECRET"]
    env["SAT_HMAC_SECRET_FILE"] = str(secret_file)
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert err.value.problems == [f"SAT_HMAC_SECRET (read from SAT_HMAC_SECRET_FILE, "
                                  f"{secret_file}) is shorter than 32 bytes"]


def test_secret_file_unreadable_and_double_source(tmp_path: Path) -> None:
    env = prod_env(tmp_path, ET_HMAC_SECRET_FILE=str(tmp_path / "nope"))
    del env["SAT_HMAC_SECRET"]
    env["SAT_HMAC_SECRET_FILE"] = str(tmp_path / "missing")
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    problems = " | ".join(err.value.problems)
    assert "SAT_HMAC_SECRET_FILE: cannot read" in problems
    assert "ET_HMAC_SECRET and ET_HMAC_SECRET_FILE are both set" in problems


def test_rotation_variants_join_the_keyring(tmp_path: Path) -> None:
    old, new = strong("old"), strong("new")
    settings = load_settings(
        prod_env(tmp_path, SAT_HMAC_SECRET_PREVIOUS=old, SAT_HMAC_SECRET_NEXT=new)
    )
    ring = settings.sat
    assert ring.current_kid == derive_kid(strong("SAT_HMAC_SECRET").encode())
    assert set(ring.kids) == {derive_kid(s.encode()) for s in (old, new, strong("SAT_HMAC_SECRET"))}
    assert ring.key_for(derive_kid(old.encode())) == old.encode()


def test_short_rotation_secret_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(prod_env(tmp_path, ET_HMAC_SECRET_NEXT="x" * 31))
    assert err.value.problems == ["ET_HMAC_SECRET_NEXT is shorter than 32 bytes"]


@pytest.mark.parametrize("value", [None, "dev", "development", "DEV"])
def test_dev_generates_and_persists_secrets(tmp_path: Path, value: str | None) -> None:
    env = {"STORAGE_ROOT": str(tmp_path)}
    if value is not None:
        env["FORGE_ENV"] = value
    first = load_settings(env)
    assert first.env is ForgeEnv.DEV
    assert first.warnings and "using generated secrets" in first.warnings[0]
    secrets_file = tmp_path / "secrets" / "dev-secrets.json"
    assert stat.S_IMODE(os.stat(secrets_file).st_mode) == 0o600
    second = load_settings(env)
    assert second.sat.current == first.sat.current
    assert second.operator.current == first.operator.current
    stored = json.loads(secrets_file.read_text())
    # The four HMAC secrets plus each service's NATS password, all distinct.
    nats_vars = {f"NATS_{i.upper()}_PASSWORD" for i in ("spawn", "orchestrator", "scoreboard")}
    assert set(stored) == set(REQUIRED) | nats_vars
    assert len(set(stored.values())) == 7
    assert second.nats_password("spawn") == first.nats_password("spawn") == stored[
        "NATS_SPAWN_PASSWORD"]


def test_dev_keeps_explicit_secret_and_allows_flags(tmp_path: Path) -> None:
    settings = load_settings({"STORAGE_ROOT": str(tmp_path), "SAT_HMAC_SECRET": "short-dev",
                              "DEV_ALLOW_XPLAN": "true", "ALLOW_FREE_DEFAULT": "yes"})
    assert settings.sat.current == b"short-dev"
    assert settings.dev_allow_xplan and settings.allow_free_default
    assert "SAT_HMAC_SECRET" not in settings.warnings[0]


def test_keyring_repr_hides_secrets(tmp_path: Path) -> None:
    settings = load_settings(prod_env(tmp_path))
    assert strong("SAT_HMAC_SECRET") not in repr(settings)


def test_operator_token_match_is_keyring_aware(tmp_path: Path) -> None:
    nxt = strong("next-op")
    settings = load_settings(prod_env(tmp_path, OPERATOR_TOKEN_NEXT=nxt))
    assert settings.operator.matches(nxt)
    assert settings.operator.matches(strong("OPERATOR_TOKEN"))
    assert not settings.operator.matches(strong("OPERATOR_TOKEN") + "x")
    assert not settings.operator.matches("")


def test_a_signing_key_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    # A file there made every key command and the scoreboard's signing_key check say
    # "refusing storage root … choose another STORAGE_ROOT", and `forge config check` said
    # "configuration OK": the wrong variable, and a fix that changed nothing.
    planted = tmp_path / "not-a-folder"
    planted.write_text("x\n")
    with pytest.raises(ConfigError) as err:
        load_settings(prod_env(tmp_path, FORGE_SIGNING_KEY_DIR=str(planted)))
    assert err.value.problems == [
        f"FORGE_SIGNING_KEY_DIR {planted} is not a folder: name the folder of the verdict "
        "signing keys (`forge keys generate` makes it), or unset it to use "
        "STORAGE_ROOT/keys/signing"]
    folder = tmp_path / "keys"  # a folder, or one not made yet, is fine
    assert load_settings(prod_env(tmp_path, FORGE_SIGNING_KEY_DIR=str(folder))
                         ).signing_key_dir == folder
