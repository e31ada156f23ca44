"""A token verified once is not checked by PyJWT again (the lab page sends the same session
cookie with every status poll), and what is remembered never widens what is accepted: the
times still count on every call, another kind, audience or keyring is checked afresh, and
each caller gets claims of its own."""

from __future__ import annotations

import time

import pytest

from forge.config import HmacKeyring
from forge.tokens import (
    ACCESS,
    SAT,
    SESSION,
    TokenExpired,
    TokenUnknownKey,
    TokenWrongAudience,
    TokenWrongType,
    codec,
    mint_token,
    verify_token,
)
from forge.tokens.kinds import ISSUER

OLD, CUR = b"o" * 40, b"c" * 40
CLAIMS = {"sub": "alice", "tenant_id": "acme", "scope": "scenario:scn-0123456789abcdef"}


def test_a_token_is_checked_once_then_remembered() -> None:
    ring = HmacKeyring("SAT_HMAC_SECRET", current=CUR)
    token = mint_token(ring, SESSION, CLAIMS)
    first = verify_token(ring, SESSION, token)
    before = codec._checked_claims.cache_info()
    again = verify_token(ring, SESSION, token)
    after = codec._checked_claims.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    assert again == first


def test_each_caller_gets_claims_of_its_own() -> None:
    ring = HmacKeyring("SAT_HMAC_SECRET", current=CUR)
    token = mint_token(ring, SESSION, CLAIMS)
    verify_token(ring, SESSION, token)["sub"] = "mallory"
    assert verify_token(ring, SESSION, token)["sub"] == "alice"


def test_a_remembered_token_still_expires() -> None:
    ring = HmacKeyring("SAT_HMAC_SECRET", current=CUR)
    token = mint_token(ring, SESSION, CLAIMS)
    claims = verify_token(ring, SESSION, token)
    with pytest.raises(TokenExpired):
        verify_token(ring, SESSION, token, now=claims["exp"] + codec.DEFAULT_LEEWAY_S + 1)
    assert verify_token(ring, SESSION, token, now=time.time()) == claims


def test_a_remembered_token_is_no_other_kind_and_no_other_audience() -> None:
    ring = HmacKeyring("SAT_HMAC_SECRET", current=CUR)
    token = mint_token(ring, SESSION, CLAIMS)
    verify_token(ring, SESSION, token)
    with pytest.raises(TokenWrongType):
        verify_token(ring, ACCESS, token)
    with pytest.raises(TokenWrongAudience):
        codec.verify(ring, token, typ=SESSION.typ, issuer=ISSUER, audience=SAT.audience)


def test_a_retired_key_is_refused_though_its_token_was_remembered() -> None:
    rolling = HmacKeyring("SAT_HMAC_SECRET", current=CUR, previous=OLD)
    token = mint_token(HmacKeyring("SAT_HMAC_SECRET", current=OLD), SESSION, CLAIMS)
    assert verify_token(rolling, SESSION, token)["sub"] == "alice"
    with pytest.raises(TokenUnknownKey):
        verify_token(HmacKeyring("SAT_HMAC_SECRET", current=CUR), SESSION, token)
