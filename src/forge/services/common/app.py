"""The app factory every service uses: health, readiness, metrics, errors, request context."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from forge import __version__
from forge.config.keyring import list_mac
from forge.config.settings import Settings
from forge.errors import ForgeError
from forge.services.common.auth import (
    OperatorKeyFilter,
    require_keyring_reader,
    require_operator,
)
from forge.services.common.errors import install_error_handlers
from forge.services.common.head_requests import HeadAsGetMiddleware
from forge.services.common.host_cookies import HostCookiesMiddleware
from forge.services.common.json_keys import RepeatedKeyMiddleware
from forge.services.common.limits import InputLimitMiddleware
from forge.services.common.logging import Redactor
from forge.services.common.metrics import CONTENT_TYPE, ServiceMetrics
from forge.services.common.middleware import RequestContextMiddleware
from forge.services.common.openapi import errors, install_openapi
from forge.services.common.peer_keyring import VERIFIERS_DOMAIN
from forge.services.common.peer_proof import ProofVerifier
from forge.services.common.readiness import FRESH, CheckFailed, Readiness
from forge.services.common.request_checks import request_checks
from forge.services.common.workers import service_pid
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.sqlite_files import store_sqlite_file
from forge.store.wal_checkpoints import checkpoint_periodically

Hook = Callable[[], Awaitable[None]]
# FastAPI's own OpenTelemetry (newer releases) is off: the services export Prometheus
# metrics and log every request themselves, and asking for the three OpenTelemetry
# providers on every request cost ~0.1 ms each (7 % of a /readyz). Releases without it
# take no such argument.
_NO_OTEL: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


@dataclass
class ServiceContext:
    """What one service process holds: settings, state store, readiness, metrics, hooks."""

    name: str
    settings: Settings
    db: Database
    readiness: Readiness
    metrics: ServiceMetrics
    startup: list[Hook] = field(default_factory=list)
    shutdown: list[Hook] = field(default_factory=list)
    # which OPERATOR_TOKEN of its own ring the service still accepts (None: all of them)
    operator_keys: OperatorKeyFilter | None = None
    # the peers' proofs for reading the key ids (forge.services.common.peer_proof)
    proofs: ProofVerifier = field(default_factory=ProofVerifier)


def make_context(name: str, settings: Settings) -> ServiceContext:
    """Create a context with the checks every service has: config, store, storage."""
    db = Database(settings.db_url)
    ctx = ServiceContext(
        name=name,
        settings=settings,
        db=db,
        readiness=Readiness(redactor=Redactor(settings.secret_values())),
        metrics=ServiceMetrics(name),
    )
    # Made once: the settings never change in a process (a new secret is a restart), and
    # the peers ask for it every few seconds (key ids and the verifiers' HMAC each time).
    summary = config_summary(settings)
    ctx.readiness.add("config", lambda: summary)
    ctx.readiness.add("store", lambda: _ping(db))
    return ctx


def config_summary(settings: Settings) -> dict[str, Any]:
    """FORGE_ENV and, per secret, the key ids in force: comparable across services, and
    never the secrets themselves (a kid is a one-way digest). OPERATOR_TOKEN's entry also
    lists a full-length digest of each accepted token (``verifiers``): spawn_service, which
    the rotation order never gives the new token, accepts the orchestrator's through them
    (``forge.services.spawn.operator_keys``). Only an operator credential sees this detail,
    and a service token is one: it reveals no power its reader lacks; so does a peer's proof
    (``peer_proof``), which opens this check alone. The list carries an
    HMAC with the SAT keyring (``verifiers_mac``): whatever answers at ORCHESTRATOR_URL
    without that secret (a process squatting its port during a restart) cannot make
    spawn_service take a token of its choosing."""
    keyring: dict[str, dict[str, Any]] = {
        r.name: {"current": r.current_kid, "accepted": sorted(r.kids)}
        for r in (settings.sat, settings.et, settings.receipt, settings.operator)}
    verifiers = sorted(settings.operator.verifiers)
    keyring[settings.operator.name].update(
        verifiers=verifiers, verifiers_mac=list_mac(settings.sat, VERIFIERS_DOMAIN, verifiers))
    return {"forge_env": settings.env.value, "keyring": keyring}


def _ping(db: Database) -> str:
    db.ping()
    return "reachable"


def storage_writable(root: Path) -> str:
    """Readiness check: the storage root accepts a file write and removal."""
    probe = os.path.join(root, f".readyz-probe-{id(root)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(probe, flags, 0o600)
        except FileNotFoundError:  # no root yet: made here, as a first start would
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(probe, flags, 0o600)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckFailed(f"storage root {root} is not writable: {exc.strerror}") from exc
    return f"{root} writable"


def public_readiness(body: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see of a readiness result: status and the names of failed checks."""
    keep = ("status", "failed", "error", "message")
    public = {k: body[k] for k in keep if k in body}
    public.setdefault("failed", [])
    return public


def create_app(ctx: ServiceContext) -> FastAPI:
    """A FastAPI app with /healthz, /readyz, /metrics and the shared behaviour."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        upgrade(ctx.settings.db_url)
        for hook in ctx.startup:
            await hook()
        # SQLite: the WAL checkpointed here, not inside a request's commit
        checkpoints = (asyncio.create_task(checkpoint_periodically(ctx.db))
                       if store_sqlite_file(ctx.db.url) is not None else None)
        try:
            yield
        finally:
            if checkpoints is not None:
                checkpoints.cancel()
                # Whatever ended it (cancelled, or a failure it did not expect), the
                # shutdown hooks below still run: a raise here skipped them.
                await asyncio.gather(checkpoints, return_exceptions=True)
            for hook in reversed(ctx.shutdown):
                await hook()
            ctx.db.dispose()

    # No /docs or /redoc: FastAPI's pages load Swagger UI and ReDoc from a public CDN with
    # no integrity hash, on the origin of the learner UI and /ops, where the session and
    # operator cookies apply. /openapi.json (data, no script) stays.
    # Every route refuses a query parameter given twice unless it takes a list
    # (forge.services.common.query_params); an API route, a body where it takes none
    # (forge.services.common.no_body): both in one dependency (request_checks), as one costs
    # a request far less than two.
    app = FastAPI(title=f"FrostGate Forge {ctx.name}", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  dependencies=[Depends(request_checks)],
                  **_NO_OTEL)
    app.state.ctx = ctx
    install_error_handlers(app)
    install_openapi(app)
    # Innermost: HEAD routed as GET (logged and measured as HEAD outside it).
    app.add_middleware(HeadAsGetMiddleware)
    # It reads the body through the size limit, which cuts a large one off.
    app.add_middleware(RepeatedKeyMiddleware)
    # Added before the context, so it runs inside it (the 413 is logged and counted).
    app.add_middleware(InputLimitMiddleware, max_body=ctx.settings.max_body_bytes,
                       ws_max=ctx.settings.ws_max_message_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=ctx.metrics)
    # Outermost: over https, the cookies' `__Host-` names (forge.services.common.host_cookies).
    app.add_middleware(HostCookiesMiddleware)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str | int]:
        """Liveness: the process answers. Says nothing about dependencies. The pid lets a
        supervisor check that the answer comes from the process it started."""
        return {"status": "ok", "service": ctx.name, "pid": service_pid(),
                "worker_pid": os.getpid()}

    @app.get("/readyz", tags=["ops"], responses=errors(400, 401, 503))
    async def readyz(request: Request,
                     check: Annotated[list[str] | None, Query(max_length=16)] = None,
                     ) -> JSONResponse:
        """Readiness: 200 or 503 with the names of failed checks. Each check's detail (paths,
        key ids, environment) only with the operator token; a wrong token is 401.
        `?check=config` (repeatable) runs only the named checks: a peer service that needs
        one detail does not make this one probe its store, disk and bus each time. The
        config check alone is also shown for a peer's proof (`services.common.peer_proof`),
        which peers send instead of a credential that opens more."""
        detailed = request.headers.get("authorization") is not None
        only = None if not check else frozenset(check)
        if detailed:
            if only == frozenset({"config"}):  # a peer's read: proofs too (peer_proof)
                await require_keyring_reader(request, ctx.settings, ctx.name, ctx.operator_keys,
                                             ctx.proofs)
            else:
                await require_operator(request, ctx.settings, ctx.name, ctx.operator_keys)
        if only is not None and (unknown := sorted(only - set(ctx.readiness.names))):
            # The names of the checks are detail too: only for the operator token.
            known = (f"; this service has {', '.join(ctx.readiness.names)}" if detailed
                     else "")
            raise ForgeError("bad_request", 400,
                             f"check: no readiness check named {unknown[0][:40]!r}{known}",
                             [{"field": "check"}])
        fresh = FRESH.set(detailed)  # an operator sees the peers as they are now
        try:
            ok, body = await ctx.readiness.run(only)
        finally:
            FRESH.reset(fresh)
        if not detailed:
            body = public_readiness(body)
        body["service"] = ctx.name
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse,
             responses={200: {"description": "Prometheus text exposition",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        """Prometheus exposition."""
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    return app
