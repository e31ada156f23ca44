"""Open Badges credentials from verdicts cannot be forged, altered, replayed onto another
verdict, kept alive after revocation, or had for a failing verdict or by someone else.

A real scoreboard (uvicorn, nats-server, SQLite or PostgreSQL) scores real completion events
and issues the credential; the offline verifier (`forge_verify`, no PyJWT) and PyJWT check it.
Before this change there was no credential at all: `POST /v1/scores/{id}/credential` was a
404/405, and the verifier had no `credential` command.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from forge.cli import app as forge_cli
from forge.evidence.credentials import sign_jwt
from forge.identity.apikeys import create_api_key
from forge.signing.keystore import SigningKey
from forge_verify import main as verify_main
from forge_verify import verify_credential
from forge_verify.credential import b64url_encode, decode_compact
from forge_verify.keys import public_pem

from ..scoreboard.conftest import Board, MakeBoard, build_completion, make_board  # noqa: F401 (fixture)


async def _scored(board: Board, **kwargs: Any) -> str:
    done = build_completion(board.settings, **kwargs)
    await asyncio.to_thread(board.state.scorer.score, done.event)
    return done.scenario_id


def _key(board: Board, tenant: str, subject: str) -> dict[str, str]:
    return {"x-api-key": create_api_key(board.state.ctx.db, tenant, subject).plaintext}


def _reissued(token: str, **changes: Any) -> str:
    """The same header and signature over changed claims (what an editor of the file does)."""
    head, _, sig = token.split(".")
    claims = decode_compact(token).claims
    claims.update(changes)
    return f"{head}.{b64url_encode(json.dumps(claims).encode())}.{sig}"


def _codes(token: str, board: Board, **kwargs: Any) -> list[str]:
    trusted = list(board.keyring().public_keys().values())
    res = verify_credential(token.encode(), trusted, **kwargs)
    return [r.code for r in res.reasons]


async def test_a_credential_verifies_offline_and_every_forgery_fails(
        make_board: MakeBoard, tmp_path: Path) -> None:  # noqa: F811
    board = await make_board()
    sid = await _scored(board, tenant="acme", subject="alice")
    alice = _key(board, "acme", "alice")
    async with board.client() as client:
        issued = await client.post(f"/v1/scores/{sid}/credential", headers=alice)
        assert issued.status_code == 200, issued.text
        token = issued.json()["credential"]
        again = await client.post(f"/v1/scores/{sid}/credential", headers=alice)
        assert again.json()["credential"] == token  # issued once, the same bytes after
        verdict = (await client.get(f"/v1/scores/{sid}/artifacts/verdict.sig",
                                    headers=alice)).content
        status = await client.get("/v1/credentials/status/1")
        keys = await client.get("/v1/credentials/keys")
        issuer = await client.get("/v1/credentials/issuer")
    assert status.status_code == 200 and keys.status_code == 200
    assert issuer.json()["type"] == ["Profile"]

    # What it says: an OpenBadgeCredential naming the lab, its objectives, score, date and
    # the verdict, signed EdDSA by the verdict key; PyJWT agrees with the offline verifier.
    current = board.keyring().current()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "typ": "vc+jwt", "kid": current.key_id}
    vc = jwt.decode(token, current.public_key, algorithms=["EdDSA"])
    assert vc["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert vc["@context"][0] == "https://www.w3.org/ns/credentials/v2"
    subject = vc["credentialSubject"]
    assert subject["type"] == ["AchievementSubject"] and subject["result"][0]["value"] == "1"
    assert subject["achievement"]["name"] and "Objectives" in \
        subject["achievement"]["criteria"]["narrative"]
    assert "alice" not in json.dumps(subject)  # the learner only as a salted hash
    assert vc["evidence"][0]["id"] == f"urn:forge:scenario:{sid}"
    assert vc["credentialStatus"]["type"] == "BitstringStatusListEntry"

    # Offline: PASS with the published keys, the verdict and the status list, from files.
    files = {"credential.vc": token.encode(), "verdict.sig": verdict,
             "status.jwt": status.content, "keys.pem": keys.content}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    argv = ["credential", str(tmp_path / "credential.vc"), "--trusted-key",
            str(tmp_path / "keys.pem"), "--verdict", str(tmp_path / "verdict.sig"),
            "--status-list", str(tmp_path / "status.jwt")]
    assert verify_main(argv) == 0
    cli = CliRunner().invoke(forge_cli, ["verify-credential", *argv[1:]])
    assert cli.exit_code == 0, cli.output
    assert cli.stdout.startswith(f"PASS credential for lab {sid} score=1 key=")

    # A changed claim (a better score, another lab) breaks the signature.
    assert "signature_invalid" in _codes(_reissued(token, name="CISSP master"), board)
    forged_subject = dict(subject, result=[{"type": ["Result"], "value": "2"}])
    assert "signature_invalid" in _codes(
        _reissued(token, credentialSubject=forged_subject), board)
    # Signed by another key: under the platform's key id it does not verify; under its own
    # id it is not a trusted key; `alg: none` and HMAC are refused outright.
    other = SigningKey.from_private_key(Ed25519PrivateKey.generate())
    claims = decode_compact(token).claims
    impostor = SigningKey(current.key_id, other.private_key)
    assert "signature_invalid" in _codes(sign_jwt(claims, impostor), board)
    assert "unknown_key" in _codes(sign_jwt(claims, other), board)
    (tmp_path / "other.pem").write_bytes(public_pem(other.public_key))
    assert verify_main(["credential", str(tmp_path / "credential.vc"), "--trusted-key",
                        str(tmp_path / "other.pem")]) == 1
    unsigned = jwt.encode(claims, key=None, algorithm="none",
                          headers={"kid": current.key_id, "typ": "vc+jwt"})
    assert _codes(unsigned, board)[0] == "algorithm_refused"
    hmac = jwt.encode(claims, "a shared secret of 32 characters", algorithm="HS256",
                      headers={"kid": current.key_id, "typ": "vc+jwt"})
    assert _codes(hmac, board)[0] == "algorithm_refused"
    # Moved onto another verdict (or the verdict altered): the digest does not match.
    assert "verdict_digest_mismatch" in _codes(token, board, verdict=verdict + b" ")
    # Results edited after signing so that a failing lab reads as passed: the verdict no
    # longer verifies, and nothing is vouched for.
    failing = await _scored(board, tenant="acme", subject="alice", passed=False)
    path = board.results_dir(failing) / "score.json"
    doc = json.loads(path.read_bytes())
    doc["passed"] = doc["total"]
    path.write_text(json.dumps(doc))
    async with board.client() as client:
        edited = await client.post(f"/v1/scores/{failing}/credential", headers=alice)
    assert edited.status_code == 409 and edited.json()["error"] == "verdict_not_verified"
