"""The learner terminal's `?host=` must be exactly a lab host name (the DSL's identifier).

Before: the check used `re.match`, whose `$` also matches before a trailing newline, so
`learner\\n` passed as a host name and went on to authentication (and, for a signed-in
learner, into a terminal token). After: `fullmatch`, so it is refused first, with 4400.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from forge.config import load_settings
from forge.services.spawn.app import build_app

from ..services.conftest import prod_environ

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # refused before any store access


@pytest.mark.parametrize("host", ["learner\n", "learner\r\n", "Learner", "1learner", ""])
def test_a_host_that_is_not_exactly_a_name_is_refused_first(tmp_path: Path, host: str) -> None:
    app = build_app(load_settings(prod_environ(tmp_path / "storage",
                                               FORGE_DB_URL=f"sqlite:///{tmp_path / 'f.db'}")))
    client = TestClient(app)  # no lifespan: the refusal needs neither bus nor store
    path = "/v1/scenarios/scn-" + "c" * 16 + "/terminal"
    with pytest.raises(WebSocketDisconnect) as closed, \
            client.websocket_connect(path, params={"host": host}):
        pass
    assert closed.value.code == 4400
