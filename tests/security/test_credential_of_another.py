"""Attack: Bob presents Alice's credential as his own, and the offline check says PASS.

A credential names its learner only by a salted hash of `tenant/subject`. `forge-verify
credential` checked the signature, the shape, the verdict and the status list, all of which
Alice's genuine credential passes whoever hands it over, and had no way to say whose it
must be (the verdict verifier has `--expect-learner` for the same replay): an employer
following docs/classrooms.md accepted it from Bob. Now `--expect-learner TENANT/SUBJECT`
(also on `forge verify-credential`) fails with `learner_mismatch` unless the credential's
hashed identifier is that learner's, and a check without it says that anyone may present it.

A real scoreboard issues the credential; the real verifier and CLI check it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from forge.cli import app as forge_cli
from forge.identity.apikeys import create_api_key
from forge_verify import main as verify_main
from forge_verify import verify_credential
from forge_verify.keys import public_pem

from ..scoreboard.conftest import Board, MakeBoard, build_completion, make_board  # noqa: F401 (fixture)


async def _alices_credential(board: Board) -> str:
    done = build_completion(board.settings, tenant="acme", subject="alice")
    await asyncio.to_thread(board.state.scorer.score, done.event)
    alice = {"x-api-key": create_api_key(board.state.ctx.db, "acme", "alice").plaintext}
    async with board.client() as client:
        issued = await client.post(f"/v1/scores/{done.scenario_id}/credential",
                                   headers=alice)
    assert issued.status_code == 200, issued.text
    token: str = issued.json()["credential"]
    return token


async def test_another_learners_credential_fails_the_learner_check(
        make_board: MakeBoard, tmp_path: Path) -> None:  # noqa: F811
    board = await make_board()
    token = await _alices_credential(board)
    trusted = list(board.keyring().public_keys().values())

    as_bob = verify_credential(token.encode(), trusted, learner="acme/bob")
    assert [r.code for r in as_bob.reasons] == ["learner_mismatch"]
    assert "acme/bob" in as_bob.reasons[0].message
    other_tenant = verify_credential(token.encode(), trusted, learner="other/alice")
    assert [r.code for r in other_tenant.reasons] == ["learner_mismatch"]
    as_alice = verify_credential(token.encode(), trusted, learner="acme/alice")
    assert as_alice.ok and as_alice.learner == "acme/alice", as_alice.reasons
    unnamed = verify_credential(token.encode(), trusted)
    assert unnamed.ok and any("anyone may present" in n for n in unnamed.notes)

    cred, keys = tmp_path / "credential.vc", tmp_path / "keys.pem"
    cred.write_text(token)
    keys.write_bytes(b"".join(public_pem(k) for k in trusted))
    assert verify_main(["credential", "--trusted-key", str(keys),
                        "--expect-learner", "acme/bob", str(cred)]) == 1
    assert verify_main(["credential", "--trusted-key", str(keys),
                        "--expect-learner", "acme/alice", str(cred)]) == 0
    out = CliRunner().invoke(forge_cli, ["verify-credential", str(cred), "--trusted-key",
                                         str(keys), "--expect-learner", "acme/bob"])
    assert out.exit_code == 1 and "learner_mismatch" in out.output, out.output
