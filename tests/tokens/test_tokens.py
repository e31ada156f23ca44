"""Every token kind round-trips, and every defect is refused with its own error."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from forge.config import HmacKeyring
from forge.tokens import (
    ACCESS,
    ET,
    RECEIPT,
    SAT,
    TokenBadSignature,
    TokenExpired,
    TokenKind,
    TokenMalformed,
    TokenMismatch,
    TokenMissingClaim,
    TokenNotYetValid,
    TokenUnknownKey,
    TokenWrongAudience,
    TokenWrongIssuer,
    TokenWrongType,
    check_sat_et_binding,
    codec,
    mint_token,
    verify_token,
)

OLD = b"o" * 40
CUR = b"c" * 40
NEW = b"n" * 40

ET_CLAIMS = {"sub": "alice", "tenant_id": "acme", "plan": "PRO", "tracks": ["netplus", "ccna"],
             "retention_days": 30, "source": "receipt"}


def sat_claims(et_jti: str = "et-1", **over: Any) -> dict[str, Any]:
    claims = {"scenario_id": "scn-0123456789abcdef", "track": "netplus",
              "template_id": "netplus", "sub": "alice", "tenant_id": "acme", "plan": "PRO",
              "et_jti": et_jti}
    claims.update(over)
    return claims


CLAIMS_BY_KIND: dict[str, dict[str, Any]] = {
    "SAT": sat_claims(),
    "ET": ET_CLAIMS,
    "RCPT": {"tenant_id": "acme", "sub": "alice", "plan": "PRO", "retention_days": 30},
    "ACC": {"scenario_id": "scn-0123456789abcdef", "sub": "alice", "tenant_id": "acme"},
}


@pytest.fixture
def ring() -> HmacKeyring:
    return HmacKeyring("SAT_HMAC_SECRET", current=CUR)


@pytest.mark.parametrize("kind", [SAT, ET, RECEIPT, ACCESS], ids=lambda k: k.typ)
def test_round_trip(ring: HmacKeyring, kind: TokenKind) -> None:
    token = mint_token(ring, kind, CLAIMS_BY_KIND[kind.typ])
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": kind.typ, "kid": ring.current_kid}
    claims = verify_token(ring, kind, token)
    for key, value in CLAIMS_BY_KIND[kind.typ].items():
        assert claims[key] == value
    assert claims["aud"] == kind.audience
    assert claims["exp"] - claims["iat"] == kind.ttl_s
    assert claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) == 32


def test_jti_unique_per_mint(ring: HmacKeyring) -> None:
    a = verify_token(ring, SAT, mint_token(ring, SAT, sat_claims()))
    b = verify_token(ring, SAT, mint_token(ring, SAT, sat_claims()))
    assert a["jti"] != b["jti"]


def test_mint_refuses_missing_claims(ring: HmacKeyring) -> None:
    with pytest.raises(ValueError, match="scenario_id"):
        mint_token(ring, SAT, sat_claims(scenario_id=""))


def test_wrong_type_refused(ring: HmacKeyring) -> None:
    access = mint_token(ring, ACCESS, CLAIMS_BY_KIND["ACC"])
    with pytest.raises(TokenWrongType):
        verify_token(ring, SAT, access)


def test_wrong_audience_refused(ring: HmacKeyring) -> None:
    token = codec.mint(ring, typ="SAT", issuer="forge_spawn_service", audience="forge_scoreboard",
                       ttl_s=60, claims=sat_claims())
    with pytest.raises(TokenWrongAudience):
        verify_token(ring, SAT, token)


def test_wrong_issuer_refused(ring: HmacKeyring) -> None:
    token = codec.mint(ring, typ="SAT", issuer="someone_else", audience=SAT.audience,
                       ttl_s=60, claims=sat_claims())
    with pytest.raises(TokenWrongIssuer):
        verify_token(ring, SAT, token)


def test_expired_refused_beyond_leeway(ring: HmacKeyring) -> None:
    token = mint_token(ring, SAT, sat_claims(), ttl_s=60, now=time.time() - 200)
    with pytest.raises(TokenExpired):
        verify_token(ring, SAT, token)
    # Within the 30 s leeway it still verifies.
    fresh = mint_token(ring, SAT, sat_claims(), ttl_s=60, now=time.time() - 80)
    assert verify_token(ring, SAT, fresh)["sub"] == "alice"


def test_expiry_can_be_ignored_for_completed_labs(ring: HmacKeyring) -> None:
    token = mint_token(ring, ET, ET_CLAIMS, ttl_s=60, now=time.time() - 86400)
    assert verify_token(ring, ET, token, check_expiry=False)["sub"] == "alice"


def test_not_yet_valid_refused(ring: HmacKeyring) -> None:
    token = mint_token(ring, SAT, sat_claims(), now=time.time() + 600)
    with pytest.raises(TokenNotYetValid):
        verify_token(ring, SAT, token)


def test_bad_signature_refused(ring: HmacKeyring) -> None:
    token = mint_token(ring, SAT, sat_claims())
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenBadSignature):
        verify_token(ring, SAT, f"{head}.{forged}.{sig}")


def test_unknown_kid_refused(ring: HmacKeyring) -> None:
    other = HmacKeyring("SAT_HMAC_SECRET", current=NEW)
    with pytest.raises(TokenUnknownKey):
        verify_token(ring, SAT, mint_token(other, SAT, sat_claims()))


def test_kid_forged_to_match_but_other_secret_refused(ring: HmacKeyring) -> None:
    token = jwt.encode(
        {**sat_claims(), "iss": "forge_spawn_service", "aud": SAT.audience, "iat": int(time.time()),
         "nbf": int(time.time()), "exp": int(time.time()) + 60, "jti": "x" * 32},
        NEW, algorithm="HS256", headers={"typ": "SAT", "kid": ring.current_kid},
    )
    with pytest.raises(TokenBadSignature):
        verify_token(ring, SAT, token)


@pytest.mark.parametrize("bad", ["", "abc", "a.b", "a.b.c", "x" * 20000 + ".a.b", "é.é.é"])
def test_malformed_refused(ring: HmacKeyring, bad: str) -> None:
    with pytest.raises(TokenMalformed):
        verify_token(ring, SAT, bad)


def test_alg_none_refused(ring: HmacKeyring) -> None:
    token = jwt.encode({**sat_claims()}, key=None, algorithm="none",
                       headers={"typ": "SAT", "kid": ring.current_kid})
    with pytest.raises(TokenMalformed):
        verify_token(ring, SAT, token)


def test_missing_registered_claim_refused(ring: HmacKeyring) -> None:
    now = int(time.time())
    token = jwt.encode(
        {**sat_claims(), "iss": "forge_spawn_service", "aud": SAT.audience, "iat": now,
         "exp": now + 60},  # no nbf, no jti
        CUR, algorithm="HS256", headers={"typ": "SAT", "kid": ring.current_kid},
    )
    with pytest.raises(TokenMissingClaim):
        verify_token(ring, SAT, token)


def test_missing_kind_claim_refused(ring: HmacKeyring) -> None:
    token = codec.mint(ring, typ="SAT", issuer="forge_spawn_service", audience=SAT.audience,
                       ttl_s=60, claims={"sub": "alice"})
    with pytest.raises(TokenMissingClaim, match="scenario_id"):
        verify_token(ring, SAT, token)


def test_keyring_accepts_previous_and_next() -> None:
    old_ring = HmacKeyring("X", current=OLD)
    new_ring = HmacKeyring("X", current=NEW)
    rolling = HmacKeyring("X", current=CUR, previous=OLD, next=NEW)
    for signer in (old_ring, new_ring):
        assert verify_token(rolling, SAT, mint_token(signer, SAT, sat_claims()))["sub"] == "alice"
    # Tokens from the rolling ring are signed with its current secret only.
    token = mint_token(rolling, SAT, sat_claims())
    assert jwt.get_unverified_header(token)["kid"] == HmacKeyring("X", current=CUR).current_kid
    with pytest.raises(TokenUnknownKey):
        verify_token(old_ring, SAT, token)


def test_retired_previous_refused() -> None:
    token = mint_token(HmacKeyring("X", current=OLD), SAT, sat_claims())
    with pytest.raises(TokenUnknownKey):
        verify_token(HmacKeyring("X", current=CUR, next=NEW), SAT, token)


def test_sat_et_binding(ring: HmacKeyring) -> None:
    et = verify_token(ring, ET, mint_token(ring, ET, ET_CLAIMS))
    sat = verify_token(ring, SAT, mint_token(ring, SAT, sat_claims(et_jti=et["jti"])))
    check_sat_et_binding(sat, et)
    for field, value in [("sub", "bob"), ("tenant_id", "evil"), ("plan", "ENTERPRISE"),
                         ("et_jti", "other"), ("track", "cissp")]:
        bad = dict(sat, **{field: value})
        with pytest.raises(TokenMismatch):
            check_sat_et_binding(bad, et)


@pytest.mark.parametrize("kind", [ET, SAT, ACCESS, RECEIPT])
def test_a_minted_token_is_byte_for_byte_what_pyjwt_makes(kind: TokenKind) -> None:
    """Minting signs without jwt.encode: the same header (typ, alg, kid; sorted), payload
    (claims in their order, non-ASCII escaped as json.dumps does) and signature."""
    ring = HmacKeyring("SAT_HMAC_SECRET", current=CUR, previous=OLD)
    claims = {**ET_CLAIMS, **sat_claims(),
              "note": "ünïcode ✓", "nested": {"b": [1, 2.5, None, True]}}
    now = time.time()
    token, payload = codec.mint_with_claims(ring, typ=kind.typ, issuer="forge",
                                            audience=kind.audience, ttl_s=kind.ttl_s,
                                            claims=claims, now=now)
    expected = jwt.encode(payload, CUR, algorithm="HS256",
                          headers={"typ": kind.typ, "kid": ring.current_kid})
    assert token == expected
    assert verify_token(ring, kind, mint_token(ring, kind, claims))["note"] == "ünïcode ✓"


def test_the_signing_secret_is_checked_once_not_per_token(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT checked the secret on every encode (two failed DER parses and a JSON parse):
    now once per secret, by the same check, which still refuses an asymmetric key."""
    checked: list[bytes] = []
    real = jwt.algorithms.HMACAlgorithm.prepare_key

    def counted(self: jwt.algorithms.HMACAlgorithm, key: str | bytes) -> bytes:
        checked.append(bytes(key, "utf-8") if isinstance(key, str) else key)
        return real(self, key)

    monkeypatch.setattr(jwt.algorithms.HMACAlgorithm, "prepare_key", counted)
    ring = HmacKeyring("SAT_HMAC_SECRET", current=b"s" * 41)
    for _ in range(5):
        mint_token(ring, SAT, sat_claims())
    assert checked.count(b"s" * 41) <= 1
    pem = HmacKeyring("SAT_HMAC_SECRET", current=b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0"
                                                 b"CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n")
    with pytest.raises(jwt.InvalidKeyError):
        mint_token(pem, SAT, sat_claims())
