"""`forge config check`: validate the environment exactly as a service would at start."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from forge.bus.permissions import user_name
from forge.config.db_url import normalize_url, shown_url, with_connect_timeout
from forge.config.secrets import NATS_PASSWORD_VARS, missing_nats_password, nats_password_given
from forge.config.settings import ConfigError, Settings, load_settings
from forge.signing.errors import NoSigningKey
from forge.signing.keystore import SigningKeyring, keyring_dir

CHECK_CONNECT_TIMEOUT_S = 5  # a PostgreSQL store that takes a connection and never answers
IDENTITY_OF = {var: identity for identity, var in NATS_PASSWORD_VARS.items()}


def _missing_nats(wanted: list[str], present: Callable[[str], bool]) -> list[str]:
    """A problem per service in `wanted` whose NATS password is not `present` (outside
    dev such a service refuses to start)."""
    return [missing_nats_password(identity)
            for identity in wanted if not present(NATS_PASSWORD_VARS[identity])]


def _policy_problem(policies_dir: Path, pin: str | None) -> str | None:
    """Why spawn_service and the orchestrator would refuse this policy directory (or
    OPA_POLICY_HASH), as they do at start; None when they would load it."""
    from forge.policy import PolicyError, PolicyHashMismatch, check_pinned_hash

    try:
        check_pinned_hash(pin, root=policies_dir)
    except PolicyHashMismatch as exc:
        return str(exc)
    except PolicyError as exc:
        return f"FORGE_POLICY_DIR {policies_dir}: {exc}"
    return None


def _plans_problem(plans_file: Path) -> str | None:
    """Why spawn_service and the orchestrator would refuse FORGE_PLANS_FILE at start (they
    load it as they start); None when they would load it."""
    from forge.plans import PlanError, load_plans

    try:
        load_plans(plans_file)
    except PlanError as exc:
        return f"FORGE_PLANS_FILE: {exc}"
    return None


def _templates_problem(templates_dir: Path) -> str | None:
    """Why every service would refuse FORGE_TEMPLATE_DIR at start (each loads it, and one
    invalid template stops them all: e.g. a subnet wider than /24, accepted by an earlier
    release), naming each template's problems; None when they would load it."""
    from forge.templates.problems import TemplateError
    from forge.templates.registry import TemplateRegistry

    try:
        TemplateRegistry.load(templates_dir)
    except TemplateError as exc:
        return "FORGE_TEMPLATE_DIR: " + str(exc).replace("\n  ", "\n    ")
    return None


def _store_problem(settings: Settings) -> str | None:
    """Why every service would fail to start on FORGE_DB_URL: its SQLite path holds a folder,
    a file that is not a SQLite database, or one damaged past its header (SQLite calls it
    malformed when a service reads its schema version at start), or the store is at a schema
    revision this release does not know (a newer release migrated it), or it is a new store
    while the storage root's own SQLite store holds scenarios; None otherwise, also when the
    store cannot be read now (a service waits for a store that is down)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from forge.cli.commands import refused_for_damage
    from forge.store.migrate import at_head, refuse_not_a_database, refuse_unknown_revisions
    from forge.store.sqlite_files import sqlite_file

    # A server that does not answer costs this check seconds, not the TCP timeout.
    url = with_connect_timeout(normalize_url(settings.db_url), CHECK_CONNECT_TIMEOUT_S)
    parsed = make_url(url)
    try:
        refuse_not_a_database(url)
    except CommandError as exc:
        return str(exc)
    path = sqlite_file(url) if parsed.get_backend_name() == "sqlite" else None
    if path is not None and path.is_file():
        try:
            at_head(url)  # what every service reads first at start
        except Exception as exc:  # only a damaged file is named here; others: below
            damaged = refused_for_damage(exc)
            if damaged is not None:
                return damaged
    try:
        refuse_unknown_revisions(url)
    except CommandError as exc:
        return str(exc)
    except SQLAlchemyError:
        return None  # unreachable: the services' own checks say so
    return _left_sqlite_store(settings, url)


def migration_refusal(settings: Settings) -> str | None:
    """Bring the store FORGE_DB_URL names to this release's schema, as each service would
    first at its start; the one line saying why a migration the store refused failed (an
    object already there, a row the new schema rejects), which would make every service
    exit at each start until `forge up --ready-timeout`. None when done, or when the store
    cannot be reached now (the services wait for it and their checks say why)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from forge.store.migrate import upgrade

    url = with_connect_timeout(normalize_url(settings.db_url), CHECK_CONNECT_TIMEOUT_S)
    try:
        upgrade(url)
    except CommandError as exc:
        return str(exc)
    except SQLAlchemyError:
        return None
    return None


def _scenario_count(url: str) -> int | None:
    """How many scenarios the store at `url` holds (0 without the table: a database never
    migrated); None when it cannot be read now (the services' own checks say why)."""
    from sqlalchemy import inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    from forge.store.db_engine import make_db_engine

    engine = make_db_engine(url, for_writes=False)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("scenarios"):
                return 0
            return int(conn.execute(text("SELECT count(*) FROM scenarios")).scalar() or 0)
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _left_sqlite_store(settings: Settings, url: str) -> str | None:
    """Why starting on FORGE_DB_URL would abandon the storage root's own SQLite store: it
    names another store that holds no scenario (a new PostgreSQL database, say) while
    `$STORAGE_ROOT/forge.db` holds some. The services would start empty (no API keys,
    grants, cohorts or verdict rows) and the orchestrator would destroy every lab that only
    the SQLite store knows. None otherwise."""
    import sqlite3

    from forge.store.sqlite_files import sqlite_file

    own = settings.storage_root / "forge.db"
    named = sqlite_file(url) if make_url(url).get_backend_name() == "sqlite" else None
    if not own.is_file() or (named is not None and named.resolve() == own.resolve()):
        return None
    try:  # read only, with what its write-ahead log holds (a crash leaves rows there)
        conn = sqlite3.connect(f"file:{own}?mode=ro", uri=True)
        try:
            held = int(conn.execute("SELECT count(*) FROM scenarios").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if held == 0 or _scenario_count(url) != 0:
        return None
    return (f"FORGE_DB_URL names a state store with no scenarios, but the storage root's own "
            f"state store {own} holds {held}: the services would start without its API keys, "
            "grants, cohorts and scenarios, and destroy the labs only it knows. Unset "
            "FORGE_DB_URL to keep using it, copy it into the new store with `forge store "
            f"copy` (services stopped), or move {own} out of the storage root to start anew "
            "on FORGE_DB_URL")


def start_refusals(settings: Settings) -> list[str]:
    """What spawn_service and the orchestrator refuse to start with, as they would: a
    policy directory they cannot load or whose hash differs from OPA_POLICY_HASH, a plans
    file they cannot load, a FORGE_DB_URL file that is not a database or a store a newer
    release migrated, a template directory they cannot load (every service).
    `forge up` stops on these before it starts anything."""
    return [problem for problem in (_policy_problem(settings.policies_dir,
                                                    settings.opa_policy_hash),
                                    _plans_problem(settings.plans_file),
                                    _store_problem(settings),
                                    _templates_problem(settings.templates_dir))
            if problem is not None]


def signing_key_warning(settings: Settings, environ: dict[str, str] | None = None) -> str | None:
    """Outside dev, why the scoreboard would start but score nothing (its `signing_key`
    check failing until someone runs `forge keys generate`): it never makes a key there,
    and `forge up` would wait its whole --ready-timeout for it. None when a key loads."""
    if settings.env.is_dev:
        return None  # made at the first start
    try:
        SigningKeyring(keyring_dir(settings.storage_root, environ)).current()
    except NoSigningKey as exc:
        return f"the scoreboard will start but not score: {exc}"
    return None


def up_key_warning(settings: Settings, ready_timeout: float,
                   environ: dict[str, str] | None = None) -> str | None:
    """`signing_key_warning` as `forge up` says it: the scoreboard's readiness fails without
    a key, so `forge up` waits its --ready-timeout and then stops everything; say that, and
    that a key made meanwhile (another shell) lets it come up."""
    key = signing_key_warning(settings, environ)
    if key is None:
        return None
    return (f"{key}; forge up waits {ready_timeout:.0f} s (--ready-timeout) for it, then "
            "stops everything: run `forge keys generate` on this storage root now (another "
            "shell), or Ctrl-C")


def _grants_problem(path: Path | None) -> str | None:
    """Why spawn_service could not read ENTITLEMENTS_FILE (its `store` check fails and every
    spawn relying on it is refused); None without one or when it reads."""
    from forge.entitlements.grants import EntitlementsFileError, read_file_grants

    if path is None:
        return None
    try:
        read_file_grants(path)
    except EntitlementsFileError as exc:
        return f"ENTITLEMENTS_FILE: {exc}"
    return None


def register(app: typer.Typer) -> None:
    """Add the `config` group with its `check` command."""
    group = typer.Typer(help="Configuration.", no_args_is_help=True)

    @group.command("check")
    def check(
        service: Annotated[list[str] | None, typer.Option(
            "--service", help="A service this machine runs (spawn, orchestrator, scoreboard; "
                              "repeat for several): outside dev, each needs its NATS "
                              "password. Default: all three.")] = None,
    ) -> None:
        """Print every problem of the environment (exit 1), or a summary (exit 0)."""
        wanted = service or sorted(NATS_PASSWORD_VARS)
        unknown = sorted(set(wanted) - set(NATS_PASSWORD_VARS))
        if unknown:
            raise typer.BadParameter(f"{', '.join(unknown)}: not one of "
                                     f"{', '.join(sorted(NATS_PASSWORD_VARS))}",
                                     param_hint="--service")
        try:
            settings = load_settings()
        except ConfigError as exc:  # with the NATS passwords the services would miss too
            # dev generates NATS passwords; an unknown FORGE_ENV is the one problem a
            # service reports (whether they are needed depends on what it should have been)
            dev = exc.env_label in ("dev", "development")
            problems = exc.problems + ([] if dev or exc.env_unknown else _missing_nats(
                wanted, lambda var: nats_password_given(IDENTITY_OF[var], os.environ)))
            print(str(ConfigError(exc.env_label, problems)), file=sys.stderr)
            raise typer.Exit(1) from None
        missing = _missing_nats(wanted, lambda var: bool(
            (ring := settings.nats_passwords.get(IDENTITY_OF[var])) and ring.current))
        refused = [] if settings.env.is_dev else missing  # each such service refuses to start
        # spawn_service and the orchestrator refuse to start on a policy directory they
        # cannot load or whose hash differs from OPA_POLICY_HASH: say so here too.
        policy = _policy_problem(settings.policies_dir, settings.opa_policy_hash)
        if policy is not None and set(wanted) & {"spawn", "orchestrator"}:
            refused.append(policy)
        plans = _plans_problem(settings.plans_file)  # both load it too (the scoreboard not)
        if plans is not None and set(wanted) & {"spawn", "orchestrator"}:
            refused.append(plans)
        store = _store_problem(settings)  # every service opens it at start
        if store is not None:
            refused.append(store)
        templates = _templates_problem(settings.templates_dir)  # every service loads them
        if templates is not None:
            refused.append(templates)
        grants = _grants_problem(settings.entitlements_file)  # each spawn reads it
        if grants is not None and "spawn" in wanted:
            refused.append(grants)
        if refused:
            print(str(ConfigError(settings.env.value, refused)), file=sys.stderr)
            raise typer.Exit(1)
        typer.echo(f"FORGE_ENV     {settings.env.value}")
        typer.echo(f"STORAGE_ROOT  {settings.storage_root}")
        typer.echo(f"FORGE_DB_URL  {shown_url(settings.db_url)}")
        typer.echo(f"FORGE_POLICY_DIR       {settings.policies_dir}")
        typer.echo(f"FORGE_SIGNING_KEY_DIR  {keyring_dir(settings.storage_root)}")
        for ring in (settings.sat, settings.et, settings.receipt, settings.operator):
            typer.echo(f"{ring.name:<20} kid {ring.current_kid} ({len(ring.kids)} accepted)")
        for identity, ring in settings.nats_passwords.items():
            if ring.current:
                user = user_name(identity, ring.current.decode())
                typer.echo(f"{ring.name:<27} user {user} ({len(ring.kids)} accepted)")
            elif identity in wanted:  # dev: a service without one still refuses to start
                typer.echo(f"warning: {ring.name} is not set; the {identity} service will "
                           f"refuse to start")
        for warning in settings.warnings:
            typer.echo(f"warning: {warning}")
        key = signing_key_warning(settings) if "scoreboard" in wanted else None
        if key is not None:
            typer.echo(f"warning: {key}")
        typer.echo("configuration OK")

    app.add_typer(group, name="config")
