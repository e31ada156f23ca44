"""Attack: read cohort invite codes (and API keys) out of the service's logs.

An invite link is `/join/<code>`: the code is the secret that enrols whoever holds it, and
the store keeps only its hash. The access log wrote each request's path, so every opened
or posted invite link left its code in the logs, where anyone who reads them (a log
pipeline, a support engineer) could join the class. Log lines now pass a redactor that
replaces Forge's own credentials (`fgi_` invite codes, `fgk_` API keys) wherever they
appear; the line still says which route was asked.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest

from forge.identity.roles import record_role
from forge.services.common.logging import JsonFormatter, Redactor

from ..spawn.conftest import SpawnEnv, make_spawn, spawn_env  # noqa: F401  (fixtures)
from ..spawn.test_spawn_api import key_for


@pytest.fixture
def service_log() -> Iterator[io.StringIO]:
    """What the service writes to stderr (its JSON formatter), for the access log."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("spawn_service", Redactor()))
    logger = logging.getLogger("forge.access")
    logger.addHandler(handler)
    # Whatever earlier tests in this process did to logging (a level, a disabled logger,
    # logging.disable), the access log is on while this test reads it.
    level, disabled, floor = logger.level, logger.disabled, logging.root.manager.disable
    logger.setLevel(logging.INFO)
    logger.disabled = False
    logging.disable(logging.NOTSET)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.disabled = disabled
    logging.disable(floor)


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_invite_code_never_reaches_the_log(spawn_env: SpawnEnv,  # noqa: F811
                                              service_log: io.StringIO) -> None:
    db = spawn_env.state.ctx.db
    record_role(db, "acme", "ann", "instructor", source="test")
    ann = key_for(spawn_env, "acme", "ann")
    with spawn_env.client() as client:
        cohort = client.post("/v1/cohorts", json={"name": "c"}, headers=ann).json()["cohort_id"]
        made = client.post(f"/v1/cohorts/{cohort}/invites", json={}, headers=ann)
        assert made.status_code == 201, made.text
        code = made.json()["invite"]
        assert code.startswith("fgi_")
        client.get(f"/join/{code}")  # the link, opened by a learner's browser
        client.post("/v1/cohorts/join", json={"invite": code}, headers=ann)
    end = time.monotonic() + 10  # the line is written as the request ends: bounded wait
    while "/v1/cohorts/join" not in service_log.getvalue() and time.monotonic() < end:
        time.sleep(0.05)
    text = service_log.getvalue()
    assert "/join/" in text  # the request was logged...
    assert code not in text and code[4:] not in text  # ...without its code
    assert ann["x-api-key"] not in text
