"""A leaked OPERATOR_TOKEN, retired by the customer's rotation order, must stop working on
spawn_service too.

That order rolls OPERATOR_TOKEN out to the orchestrator and the scoreboard, never to
spawn_service, which kept accepting the old token: its /ops console (every tenant's labs,
reprocessing events), its readiness details and restarting its subscriber (audit BE).
spawn_service now refuses a token of its own that the orchestrator no longer accepts, and
ends the /ops sessions opened with it; learners are served as before. And it accepts the
token the orchestrator took, so an operator who followed that order is not locked out of
spawn_service's /ops, readiness details and subscriber restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.drills.conftest import Drill, fresh_secrets, open_drill, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.root]


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Drill]:
    """A prod installation (tests/drills): nats-server started, services not."""
    with open_drill(tmp_path) as made:
        yield made


def _detail_status(url: str, token: str) -> int:
    return httpx.get(f"{url}/readyz", headers={"authorization": f"Bearer {token}"},
                     timeout=10).status_code


def _sign_in(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/ops/signin", data={"token": token},
                       headers={"origin": str(client.base_url)})


def test_a_token_the_orchestrator_retired_is_refused_by_spawn_service(drill: Drill) -> None:
    old, new = drill.secrets["OPERATOR_TOKEN"], fresh_secrets()["OPERATOR_TOKEN"]
    drill.forge_ok("keys", "generate")
    drill.start()
    spawn, orchestrator = drill.services["spawn"], drill.services["orchestrator"]
    with httpx.Client(base_url=spawn.url, timeout=10, follow_redirects=False) as attacker:
        # The token leaks; its holder opens an /ops session with it.
        assert _sign_in(attacker, old).status_code == 303
        assert attacker.get("/ops").status_code == 200

        # Runbook step 3, staged: the orchestrator takes the new token, still accepting
        # the old one while the services roll. Nothing changes for spawn_service yet.
        staged = {**drill.secrets, "OPERATOR_TOKEN": new, "OPERATOR_TOKEN_PREVIOUS": old}
        orchestrator.restart(drill.env(staged))
        assert _detail_status(spawn.url, old) == 200

        # The rotation is complete: the old token is dropped from the orchestrator. Within
        # one refresh of what spawn_service knows (10 s), it is refused there too.
        orchestrator.restart(drill.env({**drill.secrets, "OPERATOR_TOKEN": new}))
        wait_for(lambda: _detail_status(spawn.url, old) == 401, 30, "old token refused")
        restart = httpx.post(f"{spawn.url}/v1/admin/nats/restart-subscriber",
                             headers={"authorization": f"Bearer {old}"}, timeout=10)
        assert restart.status_code == 401
        assert attacker.get("/ops").headers.get("location") == "/ops/signin"
        refused = _sign_in(attacker, old)
        assert refused.status_code == 401 and old not in refused.text
        # Learners are served as before: the service stays ready.
        assert httpx.get(f"{spawn.url}/readyz", timeout=10).status_code == 200
    log = spawn.log()
    assert "no longer accepts this service's OPERATOR_TOKEN" in log
    assert old not in log and new not in log

    # spawn_service does not hold the new token (the customer's order never rolls it out
    # there), yet it accepts it: the orchestrator does, and lists its digest.
    assert _detail_status(spawn.url, new) == 200
    forged = ("y" if new[0] == "x" else "x") + new[1:]  # one character off, never the same
    assert _detail_status(spawn.url, forged) == 401
    restart = httpx.post(f"{spawn.url}/v1/admin/nats/restart-subscriber",
                         headers={"authorization": f"Bearer {new}"}, timeout=10)
    assert restart.status_code == 200, restart.text
    with httpx.Client(base_url=spawn.url, timeout=10, follow_redirects=False) as operator:
        assert _sign_in(operator, new).status_code == 303
        assert operator.get("/ops").status_code == 200
    # Once it is rolled out there too, the new token works and the old one still does not.
    spawn.restart(drill.env({**drill.secrets, "OPERATOR_TOKEN": new}))
    assert _detail_status(spawn.url, new) == 200
    assert _detail_status(spawn.url, old) == 401
    with httpx.Client(base_url=spawn.url, timeout=10, follow_redirects=False) as operator:
        assert _sign_in(operator, new).status_code == 303
        assert operator.get("/ops").status_code == 200
