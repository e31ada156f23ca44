"""Attack: a forged token whose header PyJWT itself refuses (a `kid` that is no string).

Anyone can put such a cookie in a request: `{"alg": "HS256", "typ": "SES", "kid": 1}` as the
header of a `forge_session` cookie made spawn_service answer 500 `internal_error` (PyJWT's
`InvalidTokenError` escaped the token codec, which caught only `DecodeError`) and log a
traceback per request. A token that is not well formed is malformed: the cookie signs
nobody in (401 `credentials_required`), as any other bad cookie does.
"""

from __future__ import annotations

import base64
import json

import pytest

from forge.config.keyring import HmacKeyring
from forge.tokens import SESSION, TokenMalformed, verify_token

from ..spawn.conftest import SpawnEnv, make_spawn, spawn_env  # noqa: F401


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _forged(kid: object) -> str:
    return (f"{_b64({'alg': 'HS256', 'typ': 'SES', 'kid': kid})}."
            f"{_b64({'sub': 'alice', 'tenant_id': 'acme'})}.AAAA")


@pytest.mark.parametrize("kid", [1, None, ["k"], {"k": 1}])
def test_a_header_pyjwt_refuses_is_a_malformed_token(kid: object) -> None:
    with pytest.raises(TokenMalformed):
        verify_token(HmacKeyring("SAT", current=b"s" * 32), SESSION, _forged(kid))


def test_a_session_cookie_with_a_forged_header_signs_nobody_in(
        spawn_env: SpawnEnv) -> None:  # noqa: F811
    with spawn_env.client(cookies={"forge_session": _forged(1)}) as anyone:
        resp = anyone.get("/v1/scenarios/scn-0123456789abcdef")
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] == "credentials_required"
