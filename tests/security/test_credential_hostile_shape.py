"""Attack: a credential.vc whose claims have the wrong JSON types where the verifier walks
them (a number for `evidence` or `relatedResource`, `credentialSubject.result` not a list,
a result value that is null or a list).

Anyone can write such a file and sign it with a key of their own; the verifier must say FAIL
with reasons. Before, `forge-verify credential` died with a TypeError traceback
("'int' object is not iterable", "float() argument must be a string or a real number") and
exit code 1, whoever had signed it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from forge.evidence.credentials import sign_jwt
from forge.signing.keystore import SigningKey
from forge_verify import main as verify_main
from forge_verify import verify_credential
from forge_verify.keys import public_pem

KEY = SigningKey.from_private_key(Ed25519PrivateKey.from_private_bytes(bytes([23]) * 32))

HOSTILE: dict[str, dict[str, Any]] = {
    "evidence a number": {"evidence": 5},
    "relatedResource a number": {"relatedResource": 7},
    "result a number": {"credentialSubject": {"result": 5}},
    "result value null": {"credentialSubject": {"result": [{"value": None}]}},
    "result value a list": {"credentialSubject": {"result": [{"value": [1]}]}},
}


@pytest.mark.parametrize("claims", HOSTILE.values(), ids=list(HOSTILE))
def test_a_misshapen_credential_is_credential_invalid(claims: dict[str, Any]) -> None:
    token = sign_jwt(claims, KEY).encode()
    res = verify_credential(token, [KEY.public_key], verdict=b"{}\n")
    assert res.status == "FAIL"
    assert "credential_invalid" in [r.code for r in res.reasons]
    assert res.score is None


@pytest.mark.parametrize("claims", HOSTILE.values(), ids=list(HOSTILE))
def test_the_cli_reports_fail_not_a_traceback(claims: dict[str, Any], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "credential.vc").write_text(sign_jwt(claims, KEY))
    (tmp_path / "keys.pem").write_bytes(public_pem(KEY.public_key))
    (tmp_path / "verdict.sig").write_bytes(b"{}\n")
    code = verify_main(["credential", str(tmp_path / "credential.vc"), "--trusted-key",
                        str(tmp_path / "keys.pem"), "--verdict", str(tmp_path / "verdict.sig")])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("FAIL credential")
    assert "[credential_invalid]" in out
