"""A revoked credential fails verification once the verifier is given the issuer's status
list, and a status list cleared or forged by anyone but the issuer is not believed.

`forge credential revoke ID` (the operator's command) sets the credential's bit in the
revocation Bitstring Status List that the scoreboard publishes, signed, at
`/v1/credentials/status/1`. Before this change there was neither a command nor a list: a
credential, once handed out, could never be withdrawn. A list is believed for 24 hours
after its signing only (`validUntil`), so one saved before a revocation stops vouching.
"""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from forge.cli import app as forge_cli
from forge.evidence.credentials import sign_jwt
from forge.signing.keystore import SigningKey
from forge.store.issued_credentials import list_credentials
from forge_verify import main as verify_main
from forge_verify.credential import (
    STATUS_LIST_VALIDITY_S,
    b64url_encode,
    decode_compact,
    parse_time,
)

from ..scoreboard.conftest import MakeBoard, make_board  # noqa: F401 (fixture)
from .test_credential_forgery import _codes, _reissued, _scored


async def test_revoked_credential_fails_with_the_status_list(
        make_board: MakeBoard,  # noqa: F811
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board = await make_board()
    sid = await _scored(board, tenant="acme", subject="alice")
    async with board.client() as client:
        token = (await client.post(f"/v1/scores/{sid}/credential",
                                   headers=board.operator)).json()["credential"]
        before = (await client.get("/v1/credentials/status/1")).content
        [row] = list_credentials(board.state.ctx.db)
        revoked = CliRunner().invoke(forge_cli, ["credential", "revoke", row.credential_id,
                                                 "--reason", "academic misconduct"],
                                     env=board.cli_env())
        assert revoked.exit_code == 0, revoked.output
        after = (await client.get("/v1/credentials/status/1")).content
        listed = CliRunner().invoke(forge_cli, ["credential", "list", "--json"],
                                    env=board.cli_env())
    assert json.loads(listed.stdout)["credentials"][0]["revoke_reason"] == "academic misconduct"
    assert _codes(token, board, status_list=before) == []
    assert _codes(token, board, status_list=after) == ["revoked"]
    (tmp_path / "c.jwt").write_text(token)
    (tmp_path / "s.jwt").write_bytes(after)
    (tmp_path / "k.pem").write_bytes(board.keyring().export_public())
    assert verify_main(["credential", str(tmp_path / "c.jwt"), "--trusted-key",
                        str(tmp_path / "k.pem"), "--status-list", str(tmp_path / "s.jwt")]) == 1
    # A status list "cleared" by someone else (their own key, or edited) is not believed.
    cleared = _reissued(after.decode(), credentialSubject=decode_compact(before).claims[
        "credentialSubject"])
    assert "signature_invalid" in _codes(token, board, status_list=cleared.encode())
    other = SigningKey.from_private_key(Ed25519PrivateKey.generate())
    forged = sign_jwt(decode_compact(before).claims, other)
    assert "unknown_key" in _codes(token, board, status_list=forged.encode())
    # A signed list whose bitstring inflates without bound is refused, not decompressed.
    bomb = decode_compact(before).claims
    bomb["credentialSubject"]["encodedList"] = "u" + b64url_encode(
        gzip.compress(bytes(4 * 1024 * 1024)))
    signed_bomb = sign_jwt(bomb, board.keyring().current()).encode()
    assert _codes(token, board, status_list=signed_bomb) == ["status_list_invalid"]
    # Attack: the revoked learner hands over the list saved before the revocation. No list
    # used to expire, so it vouched forever; now its signed validUntil ends that, and a list
    # older than the credential cannot vouch for it (`--at` sets the check time).
    claims = decode_compact(before).claims
    start, until = parse_time(claims["validFrom"]), parse_time(claims["validUntil"])
    assert start is not None and until is not None
    assert until - start == timedelta(seconds=STATUS_LIST_VALIDITY_S)
    later = until + timedelta(seconds=1)
    assert _codes(token, board, status_list=before) == []  # within its day it still vouches
    assert _codes(token, board, status_list=before, at=later) == ["status_list_expired"]
    assert _codes(token, board, status_list=after) == ["revoked"]
    # An issuer-signed list from before the credential existed cannot vouch for it.
    older = claims | {"validFrom": (start - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "validUntil": claims["validUntil"]}
    old_list = sign_jwt(older, board.keyring().current()).encode()
    assert _codes(token, board, status_list=old_list) == ["status_list_stale"]
    # Both command lines take --at.
    (tmp_path / "c.jwt").write_text(token)
    (tmp_path / "before.jwt").write_bytes(before)
    (tmp_path / "k.pem").write_bytes(board.keyring().export_public())
    at = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    args = [str(tmp_path / "c.jwt"), "--trusted-key", str(tmp_path / "k.pem"),
            "--status-list", str(tmp_path / "before.jwt")]
    capsys.readouterr()
    assert verify_main(["credential", *args, "--at", at]) == 1
    assert "status_list_expired" in capsys.readouterr().out
    assert verify_main(["credential", *args]) == 0
    by_forge = CliRunner().invoke(forge_cli, ["verify-credential", *args, "--at", at],
                                  env=board.cli_env())
    assert by_forge.exit_code == 1 and "status_list_expired" in by_forge.output
    with pytest.raises(SystemExit) as bad_time:
        verify_main(["credential", *args, "--at", "yesterday"])
    assert bad_time.value.code == 2 and "--at" in capsys.readouterr().err

