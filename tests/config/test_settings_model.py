"""What the typed settings model validates beyond the secrets: every bad value is a
ConfigError line naming its variable (never its value), reported with all the others."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from forge.cli import config_check
from forge.config import ConfigError, ForgeEnv, Settings, load_settings
from forge.config.keyring import derive_kid

REQUIRED = ("SAT_HMAC_SECRET", "ET_HMAC_SECRET", "RECEIPT_HMAC_SECRET", "OPERATOR_TOKEN")


def strong(name: str) -> str:
    return f"{name.lower()}-value-that-is-long-enough-0123456789"


def prod_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"FORGE_ENV": "prod", "STORAGE_ROOT": str(tmp_path)}
    env.update({n: strong(n) for n in REQUIRED})
    env.update(extra)
    return env


def only_problem(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(environ)
    assert len(err.value.problems) == 1, err.value.problems
    return err.value.problems[0]


@pytest.mark.parametrize("value", ["soon", "0", "-5", "86401", "nan", "inf"])
def test_housekeeping_interval_out_of_range_names_the_variable(tmp_path: Path,
                                                               value: str) -> None:
    assert only_problem(prod_env(tmp_path, FORGE_HOUSEKEEPING_INTERVAL_S=value)) == (
        "FORGE_HOUSEKEEPING_INTERVAL_S must be a number of seconds between 1 and 86400")


@pytest.mark.parametrize("value", ["soon", "4.9", "3601", "nan", "-30"])
def test_spawn_pending_timeout_out_of_range_names_the_variable(tmp_path: Path,
                                                               value: str) -> None:
    assert only_problem(prod_env(tmp_path, FORGE_SPAWN_PENDING_TIMEOUT_S=value)) == (
        "FORGE_SPAWN_PENDING_TIMEOUT_S must be a number of seconds between 5 and 3600")


def test_spawn_pending_timeout_defaults_to_thirty_seconds(tmp_path: Path) -> None:
    assert load_settings(prod_env(tmp_path)).spawn_pending_timeout_s == 30.0
    assert load_settings(prod_env(
        tmp_path, FORGE_SPAWN_PENDING_TIMEOUT_S="8")).spawn_pending_timeout_s == 8.0


@pytest.mark.parametrize("value", ["later", "1.5", "601", "nan", ""])
def test_bus_ack_wait_out_of_range_names_the_variable(tmp_path: Path, value: str) -> None:
    if value == "":  # an empty variable counts as unset: the default
        assert load_settings(prod_env(tmp_path, FORGE_BUS_ACK_WAIT_S=value)).bus_ack_wait_s == 30
        return
    assert only_problem(prod_env(tmp_path, FORGE_BUS_ACK_WAIT_S=value)) == (
        "FORGE_BUS_ACK_WAIT_S must be a number of seconds between 2 and 600")


@pytest.mark.parametrize("value", ["later", "0.5", "601", "nan"])
def test_scoreboard_pause_retry_out_of_range_names_the_variable(tmp_path: Path,
                                                                value: str) -> None:
    assert only_problem(prod_env(tmp_path, FORGE_SCOREBOARD_PAUSE_RETRY_S=value)) == (
        "FORGE_SCOREBOARD_PAUSE_RETRY_S must be a number of seconds between 1 and 600")
    assert load_settings(prod_env(tmp_path)).scoreboard_pause_retry_s == 5.0
    assert load_settings(prod_env(tmp_path, FORGE_SCOREBOARD_PAUSE_RETRY_S="1")
                         ).scoreboard_pause_retry_s == 1.0


@pytest.mark.parametrize("value", ["http://127.0.0.1:4222", "nats://", "nats://h:port",
                                   ",", "nats://secret-user:secret-pw@:4222",
                                   "ws://secret-user:secret-pw@h:8080",
                                   "nats://a:4222,wss://h:443"])
def test_malformed_nats_url_names_the_variable_not_the_value(tmp_path: Path,
                                                             value: str) -> None:
    problem = only_problem(prod_env(tmp_path, NATS_URL=value))
    assert problem.startswith("NATS_URL must list nats://")
    assert "secret" not in problem
    assert "ws:// and wss:// are not supported" in problem  # a WebSocket URL could never connect


def test_nats_url_accepts_a_server_list_and_bare_hosts(tmp_path: Path) -> None:
    url = "nats://a.example:4222, tls://b.example:4222,c.example"
    assert load_settings(prod_env(tmp_path, NATS_URL=url)).nats_url == url


@pytest.mark.parametrize("var", ["ORCHESTRATOR_URL", "SCOREBOARD_URL", "OPA_URL"])
@pytest.mark.parametrize("value", ["127.0.0.1:8083", "ftp://h", "http://", "http://h:port"])
def test_malformed_http_urls_name_the_variable(tmp_path: Path, var: str, value: str) -> None:
    assert only_problem(prod_env(tmp_path, **{var: value})) == (
        f"{var} must be an http:// or https:// URL with a host")


def test_urls_lose_their_trailing_slash(tmp_path: Path) -> None:
    settings = load_settings(prod_env(tmp_path, ORCHESTRATOR_URL="http://orch:8083/",
                                      SCOREBOARD_URL="https://board/", OPA_URL="http://opa/"))
    assert settings.orchestrator_url == "http://orch:8083"
    assert settings.scoreboard_url == "https://board"
    assert settings.opa_url == "http://opa"


@pytest.mark.parametrize("value", ["lots", "300000", "399999-300000", "10-20",
                                   "300000-9999999999", "a-b", "3000\u00b2-5000"])
def test_malformed_lab_uid_range_names_the_variable(tmp_path: Path, value: str) -> None:
    assert only_problem(prod_env(tmp_path, FORGE_LAB_UID_RANGE=value)).startswith(
        "FORGE_LAB_UID_RANGE must look like FIRST-LAST")


@pytest.mark.parametrize("var", ["FORGE_MAX_BODY_BYTES", "FORGE_WS_MAX_MESSAGE_BYTES"])
@pytest.mark.parametrize("value", ["1k", "1023", "99999999999", "-2048", "2048.0", "2048\u00b2"])
def test_sizes_out_of_bounds_name_the_variable(tmp_path: Path, var: str, value: str) -> None:
    assert only_problem(prod_env(tmp_path, **{var: value})).startswith(
        f"{var} must be a whole number of bytes from 1024 to ")


@pytest.mark.no_store
def test_defaults_and_empty_values(tmp_path: Path) -> None:
    blank = {v: "" for v in ("NATS_URL", "OPA_URL", "FORGE_LAB_UID_RANGE", "BILLING_MODE",
                             "FORGE_HOUSEKEEPING_INTERVAL_S", "FORGE_MAX_BODY_BYTES",
                             "ENTITLEMENTS_FILE", "FORGE_DB_URL", "ORCHESTRATOR_URL")}
    settings = load_settings(prod_env(tmp_path, **blank))
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.opa_url is None and settings.entitlements_file is None
    assert settings.lab_uid_range == "300000-399999"
    assert settings.billing_mode == "disabled"  # stub (a fake charge) is dev's default only
    assert settings.housekeeping_interval_s == 300.0
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.orchestrator_url == "http://127.0.0.1:8083"
    assert settings.db_url == f"sqlite:///{tmp_path / 'forge.db'}"
    assert load_settings({"STORAGE_ROOT": str(tmp_path)}).billing_mode == "stub"


@pytest.mark.no_store
def test_values_are_typed(tmp_path: Path) -> None:
    settings = load_settings(prod_env(
        tmp_path, FORGE_HOUSEKEEPING_INTERVAL_S="2.5", FORGE_WS_MAX_MESSAGE_BYTES="4096",
        ENTITLEMENTS_FILE="/etc/forge/entitlements.yaml", FORGE_TEMPLATE_DIR="/srv/t",
        FORGE_POLICY_DIR="/srv/p", FORGE_PLANS_FILE="/srv/plans.yaml",
        BILLING_MODE=" Disabled ", FORGE_DB_URL="sqlite:////srv/x.db"))
    assert settings.housekeeping_interval_s == 2.5
    assert settings.ws_max_message_bytes == 4096
    assert settings.entitlements_file == Path("/etc/forge/entitlements.yaml")
    assert (settings.templates_dir, settings.policies_dir, settings.plans_file) == (
        Path("/srv/t"), Path("/srv/p"), Path("/srv/plans.yaml"))
    assert settings.billing_mode == "disabled"
    assert settings.db_url == "sqlite:////srv/x.db"


def test_every_kind_of_problem_is_reported_together(tmp_path: Path) -> None:
    env = {"FORGE_ENV": "staging", "STORAGE_ROOT": str(tmp_path), "NATS_URL": "http://x",
           "FORGE_HOUSEKEEPING_INTERVAL_S": "soon", "FORGE_MAX_BODY_BYTES": "big",
           "BILLING_MODE": "stub", "DEV_ALLOW_XPLAN": "1", "OPERATOR_TOKEN": "short"}
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    text = str(err.value)
    assert text.startswith("configuration invalid (FORGE_ENV=staging):\n  - ")
    for var in ("NATS_URL", "FORGE_HOUSEKEEPING_INTERVAL_S", "FORGE_MAX_BODY_BYTES",
                "BILLING_MODE=stub", "DEV_ALLOW_XPLAN=true", "OPERATOR_TOKEN is shorter"):
        assert sum(p.startswith(var) for p in err.value.problems) == 1, var
    assert sum("missing required secret" in p for p in err.value.problems) == 3
    assert "short" not in text.replace("is shorter than", "")
    # pydantic's own wording and field names never reach the operator.
    assert "validation error" not in text and "housekeeping_interval_s" not in text


def test_unknown_forge_env_hides_the_other_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"FORGE_ENV": "qa", "STORAGE_ROOT": str(tmp_path), "NATS_URL": "x://"})
    assert err.value.env_label == "qa"
    assert err.value.problems == [
        "FORGE_ENV has an unknown value; allowed: dev, development, staging, prod, production"]


def test_previous_and_next_from_files(tmp_path: Path) -> None:
    old, new = strong("old-from-file"), strong("new-from-file")
    (tmp_path / "prev").write_text(old + "\n")
    (tmp_path / "next").write_text(new)
    settings = load_settings(prod_env(tmp_path, RECEIPT_HMAC_SECRET_PREVIOUS_FILE=str(
        tmp_path / "prev"), RECEIPT_HMAC_SECRET_NEXT_FILE=str(tmp_path / "next")))
    assert settings.receipt.key_for(derive_kid(old.encode())) == old.encode()
    assert settings.receipt.key_for(derive_kid(new.encode())) == new.encode()
    assert settings.receipt.current == strong("RECEIPT_HMAC_SECRET").encode()


def test_rotation_value_and_its_file_both_set(tmp_path: Path) -> None:
    (tmp_path / "prev").write_text(strong("old"))
    problems = []
    with pytest.raises(ConfigError) as err:
        load_settings(prod_env(tmp_path, SAT_HMAC_SECRET_PREVIOUS=strong("other"),
                               SAT_HMAC_SECRET_PREVIOUS_FILE=str(tmp_path / "prev"),
                               OPERATOR_TOKEN_NEXT_FILE=str(tmp_path)))
    problems = err.value.problems
    assert ("SAT_HMAC_SECRET_PREVIOUS and SAT_HMAC_SECRET_PREVIOUS_FILE are both set; "
            "set only one") in problems
    assert any(p.startswith("OPERATOR_TOKEN_NEXT_FILE: cannot read") for p in problems)
    assert strong("other") not in str(err.value) and strong("old") not in str(err.value)


def test_empty_secret_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    env = prod_env(tmp_path, OPERATOR_TOKEN_FILE=str(tmp_path / "empty"))
    del env["OPERATOR_TOKEN"]
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert f"OPERATOR_TOKEN_FILE: {tmp_path / 'empty'} is empty" in err.value.problems


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(prod_env(tmp_path))
    with pytest.raises(ValueError, match="frozen"):
        settings.billing_mode = "stub"  # type: ignore[misc]


def test_plain_construction_reads_the_process_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in prod_env(tmp_path, FORGE_LAB_UID_RANGE="5000-5999").items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.env is ForgeEnv.PROD and settings.lab_uid_range == "5000-5999"
    assert load_settings().sat.current == strong("SAT_HMAC_SECRET").encode()


def test_config_check_prints_the_model_problems(tmp_path: Path) -> None:
    env = prod_env(tmp_path, NATS_URL="http://user:hunter2-password@h:1",
                   FORGE_HOUSEKEEPING_INTERVAL_S="soon")
    app = typer.Typer()
    app.callback()(lambda: None)
    config_check.register(app)
    result = CliRunner().invoke(app, ["config", "check"], env=env)
    assert result.exit_code == 1
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "configuration invalid (FORGE_ENV=prod):" in output
    assert "  - NATS_URL must list nats://" in output
    assert "  - FORGE_HOUSEKEEPING_INTERVAL_S must be a number of seconds" in output
    assert "hunter2" not in output and "Traceback" not in output


@pytest.mark.parametrize("value", ["many", "-1", "257", "1.5"])
def test_build_slots_out_of_range_names_the_variable(tmp_path: Path, value: str) -> None:
    assert only_problem(prod_env(tmp_path, FORGE_BUILD_SLOTS=value)) == (
        "FORGE_BUILD_SLOTS must be a whole number from 0 to 256")


def test_the_local_engine_builds_as_many_labs_at_once_as_configured(tmp_path: Path) -> None:
    """FORGE_BUILD_SLOTS reaches the engine the orchestrator builds; 0 or unset is one per
    core this process may run on, plus one."""
    from forge.runtime.local import build

    per_core = len(os.sched_getaffinity(0)) + 1
    for extra, slots in (({}, per_core), ({"FORGE_BUILD_SLOTS": "0"}, per_core),
                         ({"FORGE_BUILD_SLOTS": "5"}, 5)):
        runtime = build(load_settings(prod_env(tmp_path, **extra)))
        try:
            assert runtime.build_slots == slots
        finally:
            runtime.close()


@pytest.mark.parametrize("value", ["soon", "0", "111", "nan"])
def test_lab_ready_timeout_out_of_range_names_the_variable(tmp_path: Path, value: str) -> None:
    assert only_problem(prod_env(tmp_path, FORGE_LAB_READY_TIMEOUT_S=value)) == (
        "FORGE_LAB_READY_TIMEOUT_S must be a number of seconds between 1 and 110")


def test_the_local_engine_waits_for_services_as_long_as_configured(tmp_path: Path) -> None:
    """FORGE_LAB_READY_TIMEOUT_S reaches the engine (how long a create waits for the
    template's ready_ports); unset, 30 s."""
    from forge.runtime.local import build

    for extra, seconds in (({}, 30.0), ({"FORGE_LAB_READY_TIMEOUT_S": "2.5"}, 2.5)):
        runtime = build(load_settings(prod_env(tmp_path, **extra)))
        try:
            assert runtime.ready_timeout_s == seconds
        finally:
            runtime.close()


@pytest.mark.parametrize("forge_env", ["prod", "dev"])
def test_a_secret_set_twice_is_that_problem_only(tmp_path: Path, forge_env: str) -> None:
    """A value and its _FILE both set is one problem, said once: not also "missing
    required secret" (it was set, twice), and in dev not papered over with a generated
    secret (the service would have run on a key nobody chose)."""
    (tmp_path / "sat").write_text(strong("file"))
    environ = prod_env(tmp_path, SAT_HMAC_SECRET=strong("value"),
                       SAT_HMAC_SECRET_FILE=str(tmp_path / "sat"))
    environ["FORGE_ENV"] = forge_env
    with pytest.raises(ConfigError) as err:
        load_settings(environ)
    assert err.value.problems == [
        "SAT_HMAC_SECRET and SAT_HMAC_SECRET_FILE are both set; set only one"]
    dev_secrets = tmp_path / "secrets" / "dev-secrets.json"  # STORAGE_ROOT is tmp_path
    assert not dev_secrets.exists() or "SAT_HMAC_SECRET" not in dev_secrets.read_text()


def test_a_crash_point_is_refused_in_production(tmp_path: Path) -> None:
    """FORGE_CRASH_POINT makes a service SIGKILL itself (chaos drills); one left over from
    a test environment would restart a production service in a loop under `forge up`."""
    problem = only_problem(prod_env(tmp_path, FORGE_CRASH_POINT="spawn.recorded"))
    assert "FORGE_CRASH_POINT" in problem and "forbidden when FORGE_ENV=prod" in problem
    assert load_settings(prod_env(tmp_path, FORGE_CRASH_POINT="")).crash_point == ""
    staging = load_settings(prod_env(tmp_path, FORGE_ENV="staging",
                                     FORGE_CRASH_POINT="spawn.recorded"))
    assert staging.crash_point == "spawn.recorded"


@pytest.mark.parametrize("url", ["::::", "postgresql://forge:pw-Secret1@db:notaport/forge",
                                 "mysql://forge:pw-Secret1@db/forge",
                                 # a driver Forge does not install, or an async one
                                 "postgresql+psycopg2://forge:pw-Secret1@db/forge",
                                 "postgres+psycopg://forge:pw-Secret1@db/forge",
                                 "sqlite+aiosqlite:////x/pw-Secret1.db"])
@pytest.mark.no_store  # only reads the URL: no store is opened
def test_a_malformed_database_url_is_refused_by_name_without_its_password(
        tmp_path: Path, url: str) -> None:
    """A typo in FORGE_DB_URL is a config error naming the variable (every service and
    `forge config check` refuse at start), not a traceback from the first engine; the
    message never repeats the URL, which may hold the password."""
    problem = only_problem(prod_env(tmp_path, FORGE_DB_URL=url))
    assert problem.startswith("FORGE_DB_URL ") and "pw-Secret1" not in problem
    for good in ("sqlite:////var/lib/forge/forge.db", "postgres://forge:pw@db:5432/forge",
                 "postgresql+psycopg://forge:pw@db/forge", "PostgreSQL://forge:pw@db/forge"):
        assert load_settings(prod_env(tmp_path, FORGE_DB_URL=good)).db_url == good


@pytest.mark.parametrize(("query", "said"), [
    ("foo=bar", 'invalid connection option "foo"'),
    ("connect_timeout=ten", "bad value for connect_timeout: 'ten'"),
    ("sslmode=require&frobnicate=pw-Secret1", 'invalid connection option "frobnicate"')])
@pytest.mark.no_store  # only reads the URL: no store is opened
def test_a_database_url_option_the_driver_refuses_is_a_config_error(
        tmp_path: Path, query: str, said: str) -> None:
    """An option psycopg refuses before connecting (`?foo=bar`, `connect_timeout=ten`) was
    "configuration OK" at `forge config check`, then a driver traceback from every
    operator command (`forge store copy`, `forge apikey list`) and a crash loop of every
    service. It is a config error naming the variable and the option, never the password."""
    url = f"postgresql+psycopg://forge:pw-Secret1@db/forge?{query}"
    problem = only_problem(prod_env(tmp_path, FORGE_DB_URL=url))
    assert problem == (f"FORGE_DB_URL has an option the PostgreSQL driver refuses ({said}): "
                       "use the libpq connection parameters, e.g. "
                       "?sslmode=require&connect_timeout=10")
    assert "pw-Secret1" not in problem
    good = "postgresql+psycopg://forge:pw@db/forge?sslmode=require&connect_timeout=10"
    assert load_settings(prod_env(tmp_path, FORGE_DB_URL=good)).db_url == good


def test_config_check_names_an_entitlements_file_spawn_service_cannot_read(
        tmp_path: Path) -> None:
    """DR: `forge config check` said "configuration OK" for an ENTITLEMENTS_FILE that does
    not exist; only spawn_service's readiness failed later, without naming the variable."""
    app = typer.Typer()
    app.callback()(lambda: None)
    config_check.register(app)
    missing = tmp_path / "grants.json"
    env = prod_env(tmp_path, ENTITLEMENTS_FILE=str(missing))
    result = CliRunner().invoke(app, ["config", "check"], env=env)
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 1, output
    assert f"ENTITLEMENTS_FILE: entitlements file {missing} is missing" in output
    # Only spawn_service reads it: a machine running the scoreboard alone is not refused.
    alone = CliRunner().invoke(app, ["config", "check", "--service", "scoreboard"], env=env)
    assert "ENTITLEMENTS_FILE" not in alone.output
    missing.write_text('{"grants": [{"tenant_id": "acme", "plan": "PRO"}]}')
    assert "ENTITLEMENTS_FILE" not in CliRunner().invoke(app, ["config", "check"],
                                                         env=env).output
