"""A revoked credential fails verification once the verifier is given the issuer's status
list, and a status list cleared or forged by anyone but the issuer is not believed.

`forge credential revoke ID` (the operator's command) sets the credential's bit in the
revocation Bitstring Status List that the scoreboard publishes, signed, at
`/v1/credentials/status/1`. Before this change there was neither a command nor a list: a
credential, once handed out, could never be withdrawn.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from forge.cli import app as forge_cli
from forge.evidence.credentials import sign_jwt
from forge.signing.keystore import SigningKey
from forge.store.issued_credentials import list_credentials
from forge_verify import main as verify_main
from forge_verify.credential import b64url_encode, decode_compact

from ..scoreboard.conftest import MakeBoard, make_board  # noqa: F401 (fixture)
from .test_credential_forgery import _codes, _reissued, _scored


async def test_revoked_credential_fails_with_the_status_list(
        make_board: MakeBoard, tmp_path: Path) -> None:  # noqa: F811
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
