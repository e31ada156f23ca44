"""Attack: pass something else off as spawn_service's service token.

spawn_service signs its calls to the orchestrator, lab nodes and the scoreboard with a
one-minute service token from the SAT keyring (audit AS: the rotation order of the
customer's runbook never rolls OPERATOR_TOKEN out to spawn_service, which lost every such
call). Those routes take operator powers, so only that token and OPERATOR_TOKEN open
them: not a learner's session or access token or a SAT (the same keyring, other types),
not a service token naming another caller, signed with another secret, or expired. Checked
on the scoreboard's operator-only summaries route and on the shared credential check.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.config import load_settings
from forge.config.keyring import HmacKeyring
from forge.services.common.auth import operator_credential, service_token
from forge.services.scoreboard.app import build_app as build_scoreboard
from forge.tokens import ACCESS, SAT, SERVICE, SESSION, mint_token

from ..services.conftest import prod_environ


def test_only_a_real_service_token_or_the_operator_token_open_operator_routes(
        tmp_path: Path, db_url: str) -> None:
    settings = load_settings(prod_environ(tmp_path / "storage", FORGE_DB_URL=db_url))
    board = TestClient(build_scoreboard(settings))
    body = {"scenario_ids": ["scn-0000000000000001"]}

    def status(token: str) -> int:
        return board.post("/v1/admin/scores/summaries", json=body,
                          headers={"authorization": "Bearer " + token}).status_code

    assert status(service_token(settings)) == 200
    assert status(settings.operator.current.decode()) == 200
    learner = {"sub": "lea", "tenant_id": "acme"}
    forged = {
        "session": mint_token(settings.sat, SESSION, {**learner, "scope": "learner"}),
        "access": mint_token(settings.sat, ACCESS, {**learner,
                                                    "scenario_id": "scn-0000000000000001"}),
        "sat": mint_token(settings.sat, SAT, {**learner, "scenario_id": "scn-0000000000000001",
                                              "track": "netplus", "template_id": "x",
                                              "plan": "PRO", "et_jti": "j"}),
        "other caller": mint_token(settings.sat, SERVICE, {"sub": "lea"}),
        "other secret": mint_token(HmacKeyring("SAT_HMAC_SECRET", b"s" * 32), SERVICE, {"sub": "spawn_service"}),
        "expired": mint_token(settings.sat, SERVICE, {"sub": "spawn_service"},
                              now=time.time() - 3600),
        "not a token": "spawn_service",
    }
    for what, token in forged.items():
        assert status(token) == 401, what
        assert not operator_credential(token, settings), what


@pytest.mark.parametrize("cut", [1, 10])
def test_a_tampered_service_token_is_refused(tmp_path: Path, cut: int) -> None:
    settings = load_settings(prod_environ(tmp_path / "storage"))
    token = service_token(settings)
    tampered = token[:-cut] + ("Q" if token[-cut] in "ABCD" else "A") + token[len(token) - cut + 1:]
    assert not operator_credential(tampered, settings)
