"""The environment variables Forge reads, and a warning for each one set that it does not.

A misspelt variable is otherwise silently ignored: `FORGE_EVN=prod` starts the platform in
dev (generated secrets, dev flags allowed) and `OPA_POLICY_HASHH=…` pins nothing, while
`forge config check` says "configuration OK". So every variable named `FORGE_…` that Forge
does not read, and every other one that is a near miss of one it reads, is a warning
naming it and, where one is close, the variable meant. Warnings only: a variable of the
operator's own may share the prefix.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from forge.config.secrets import NATS_PASSWORD_VARS, REQUIRED_SECRETS, ROTATION_SUFFIXES

_PLAIN = frozenset({
    "FORGE_ARTIFACT_STORE", "FORGE_BUILD_SLOTS", "FORGE_BUS_ACK_WAIT_S", "FORGE_CRASH_POINT",
    "FORGE_CREDENTIAL_BASE_URL", "FORGE_DB_URL", "FORGE_ENV", "FORGE_HOUSEKEEPING_INTERVAL_S",
    "FORGE_IMAGE_CACHE", "FORGE_IMAGE_DIR", "FORGE_LAB_READY_TIMEOUT_S", "FORGE_LAB_UID_RANGE",
    "FORGE_LISTEN_FD", "FORGE_LTI_FILE", "FORGE_MAX_BODY_BYTES", "FORGE_NATS_CA",
    "FORGE_NATS_REPLICAS", "FORGE_NODES", "FORGE_NODE_CAPACITY_LABS",
    "FORGE_NODE_CAPACITY_MEMORY_MB", "FORGE_NODE_GRACE_S", "FORGE_NODE_HEARTBEAT_S",
    "FORGE_NODE_ID", "FORGE_NODE_URL", "FORGE_OIDC_FILE", "FORGE_PLANS_FILE",
    "FORGE_POLICY_DIR", "FORGE_RETENTION_INTERVAL_S", "FORGE_RUNTIME_ENGINE",
    "FORGE_RUNTIME_PREFIX", "FORGE_SCOREBOARD_PAUSE_RETRY_S", "FORGE_SERVICE_PID",
    "FORGE_SIGNING_KEY_DIR", "FORGE_SPAWN_PENDING_TIMEOUT_S", "FORGE_SPAWN_WORKERS",
    "FORGE_STORE_COPY_FROM", "FORGE_TEMPLATE_DIR", "FORGE_WARM_POOL",
    "FORGE_WARM_POOL_MIN_AVAILABLE_MB", "FORGE_WORKER_INDEX", "FORGE_WS_MAX_MESSAGE_BYTES",
    "FORGE_VERIFY_SCRIPT_REEXEC",
    # the repository's own tools (Makefile, tests, bench), never a service
    "FORGE_BENCH_OUT", "FORGE_DOCS_IMAGES", "FORGE_WEB_ARTIFACTS", "FORGE_WEB_CONSOLE",
    "FORGE_WHEELHOUSE",
    "ALLOW_FREE_DEFAULT", "BILLING_MODE", "DEV_ALLOW_HEADERS", "DEV_ALLOW_XPLAN",
    "ENTITLEMENTS_FILE", "NATS_SERVER_BIN", "NATS_URL", "OPA_POLICY_HASH", "OPA_URL",
    "ORCHESTRATOR_URL", "SCOREBOARD_URL", "SPAWN_URL", "STORAGE_ROOT",
})
# The secrets: each with its rotation values, and each of those from a file.
_SECRETS = frozenset(
    name + suffix + file
    for name in (*REQUIRED_SECRETS, *NATS_PASSWORD_VARS.values())
    for suffix in ROTATION_SUFFIXES for file in ("", "_FILE"))
KNOWN_VARIABLES = _PLAIN | _SECRETS
_NEAR = 0.85  # a typo of one or two letters in a name of 8 or more


def unknown_variable_warnings(environ: Mapping[str, str]) -> list[str]:
    """A warning for each variable of `environ` that Forge does not read while its name says
    it is meant for Forge (`FORGE_…`) or is a near miss of one Forge reads; never a value."""
    warnings = []
    for name in sorted(environ):
        if name in KNOWN_VARIABLES:
            continue
        close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=_NEAR)
        if not (name.startswith("FORGE_") or (close and len(name) >= 8)):
            continue
        meant = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"{name} is set, but Forge reads no variable of that name{meant}: "
                        "it has no effect")
    return warnings
