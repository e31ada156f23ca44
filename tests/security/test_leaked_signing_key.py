"""A verdict-signing key that leaked: what its thief signs stops being believed, and what the
platform signed with it is signed again.

Before `forge keys revoke` there was no way to stop trusting a key: rotation kept every old
public key in the export, in `/v1/credentials/keys` and in the scoreboard's own check, so a
thief holding the private key could mint verdicts and credentials that verified as the
platform's for ever.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from forge.cli import app as forge_cli
from forge.evidence.credentials import sign_jwt
from forge_verify import verify_credential, verify_paths
from forge_verify.canonical import dumps_file
from forge_verify.credential import decode_compact
from forge_verify.keys import key_id_for, load_public_pems

from ..scoreboard.conftest import MakeBoard, make_board  # noqa: F401 (fixture)
from .test_credential_forgery import _key, _scored


def _verify_dir(results: Path, trusted: Path) -> list[str]:
    out = verify_paths(results / "score.json", results / "evidence.tar.zst",
                       results / "verdict.sig", results / "verdict.pub", trusted_key=trusted)
    return [r.code for r in out.reasons]


async def test_a_revoked_key_is_not_trusted_and_stored_results_are_signed_again(
        make_board: MakeBoard, tmp_path: Path) -> None:  # noqa: F811
    board = await make_board()
    env, cli = board.cli_env(), CliRunner()
    sid = await _scored(board, tenant="acme", subject="alice")
    bob_sid = await _scored(board, tenant="acme", subject="bob")
    alice = _key(board, "acme", "alice")
    leaked = board.keyring().current()  # what the thief holds
    trusted = tmp_path / "trusted"
    assert cli.invoke(forge_cli, ["keys", "export-public", "--out", str(trusted)],
                      env=env).exit_code == 0
    async with board.client() as client:
        token = (await client.post(f"/v1/scores/{sid}/credential",
                                   headers=alice)).json()["credential"]
    # The thief's own credential, signed with the leaked key, for a learner who never passed.
    forged = sign_jwt({**decode_compact(token).claims, "name": "Forged"}, leaked)
    assert [r.code for r in verify_credential(forged.encode(), load_public_pems(
        trusted.joinpath(f"{leaked.key_id}.pem").read_bytes())).reasons] == []

    done = cli.invoke(forge_cli, ["keys", "revoke", leaked.key_id, "--reason", "laptop stolen"],
                      env=env)
    assert done.exit_code == 0, done.output
    assert "current signing key is now" in done.output and "forge keys resign" in done.output
    listed = json.loads(cli.invoke(forge_cli, ["keys", "list", "--json"], env=env).stdout)
    states = {k["key_id"]: k["state"] for k in listed["keys"]}
    assert states[leaked.key_id] == "revoked" and list(states.values()).count("current") == 1

    # Nothing the leaked key signed is believed any more: the export, the public key list,
    # the scoreboard's own check of a stored verdict.
    assert cli.invoke(forge_cli, ["keys", "export-public", "--out", str(trusted)],
                      env=env).exit_code == 0
    assert not (trusted / f"{leaked.key_id}.pem").exists()
    keys = [load_public_pems(p.read_bytes())[0] for p in trusted.glob("*.pem")]
    assert "unknown_key" in [r.code for r in verify_credential(forged.encode(), keys).reasons]
    assert _verify_dir(board.results_dir(sid), trusted) == ["untrusted_key"]
    async with board.client() as client:
        served = await client.get("/v1/credentials/keys")
        summary = (await client.get(f"/v1/scores/{sid}", headers=alice)).json()
    assert leaked.key_id not in {key_id_for(k) for k in load_public_pems(served.content)}
    assert not summary["verification"]["ok"]
    assert [r["code"] for r in summary["verification"]["reasons"]] == ["revoked_key"]

    # Bob's stored verdict was changed after signing (made Mallory's): the thief could have
    # planted it.
    score = board.results_dir(bob_sid) / "score.json"
    score.chmod(0o640)
    score.write_bytes(dumps_file({**json.loads(score.read_bytes()), "subject": "mallory"}))
    bob_sig = (board.results_dir(bob_sid) / "verdict.sig").read_bytes()

    again = cli.invoke(forge_cli, ["keys", "resign", leaked.key_id, "--json"], env=env)
    assert again.exit_code == 1, again.output  # one set left as it is
    report = json.loads(again.stdout)
    assert report["verdicts"] == [sid] and report["credentials"] == 1
    assert [r["scenario_id"] for r in report["refused"]] == [bob_sid]
    assert (board.results_dir(bob_sid) / "verdict.sig").read_bytes() == bob_sig
    assert _verify_dir(board.results_dir(sid), trusted) == []
    async with board.client() as client:
        summary = (await client.get(f"/v1/scores/{sid}", headers=alice)).json()
        reissued = (await client.post(f"/v1/scores/{sid}/credential",
                                      headers=alice)).json()["credential"]
        verdict = (await client.get(f"/v1/scores/{sid}/artifacts/verdict.sig",
                                    headers=alice)).content
    assert summary["verification"]["ok"], summary
    assert reissued != token
    # The credential signed again names the verdict signed again, and verifies with it.
    assert [r.code for r in verify_credential(reissued.encode(), keys,
                                              verdict=verdict).reasons] == []
    # Resigning a key that is not revoked is refused: it would be a no-op at best.
    current = board.keyring().current().key_id
    refused = cli.invoke(forge_cli, ["keys", "resign", current], env=env)
    assert refused.exit_code == 1 and "is not revoked" in refused.output
