"""Compact JWS (HS256) minting and verification through an HMAC keyring, using PyJWT.

Every token carries `typ` and `kid` headers and iss/aud/iat/nbf/exp/jti claims; verification
checks each of them so a token of one kind or audience is never accepted as another.

What a token's signature, header and registered claims say never changes, so the result of
those checks is kept for recently verified tokens (`_checked_claims`), keyed by the token,
the kind, issuer and audience asked for and the keyring's secrets: the lab page sends the
same session cookie with every status poll, and PyJWT took ~70 us of CPU to check it each
time. The times (exp, nbf) are checked on every call, and a failure is never kept.

Minting signs without PyJWT's per-call work: PyJWT checked the secret on every encode (not
a PEM, SSH or DER key, not a JWK: two failed X.509/DER parses and a JSON parse, ~20 us)
and built and encoded the same header each time; a spawn mints three tokens. The secret is
checked by PyJWT's own HMAC `prepare_key` once per secret (`_signing_key`, refusing what it
refused), the header segment is made once per (typ, kid), and the token is byte for byte
what `jwt.encode` makes (tests/tokens/test_tokens.py compares them).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import Mapping
from typing import Any

import jwt

from forge.config.keyring import HmacKeyring, derive_kid
from forge.tokens.errors import (
    TokenBadSignature,
    TokenExpired,
    TokenMalformed,
    TokenMissingClaim,
    TokenNotYetValid,
    TokenUnknownKey,
    TokenWrongAudience,
    TokenWrongIssuer,
    TokenWrongType,
)

ALGORITHM = "HS256"
REGISTERED_CLAIMS = ("iss", "aud", "iat", "nbf", "exp", "jti")
DEFAULT_LEEWAY_S = 30
# Verified tokens remembered (see the module's docstring): the most recent this many, each
# at most this long (a session cookie is ~500 characters): under 8 MiB with their claims.
CHECKED_TOKENS = 2048
CHECKED_TOKEN_CHARS = 2048


def mint(
    keyring: HmacKeyring,
    *,
    typ: str,
    issuer: str,
    audience: str,
    ttl_s: int,
    claims: Mapping[str, Any],
    now: float | None = None,
) -> str:
    """Sign `claims` plus the registered claims with the keyring's current secret."""
    return mint_with_claims(keyring, typ=typ, issuer=issuer, audience=audience, ttl_s=ttl_s,
                            claims=claims, now=now)[0]


def mint_with_claims(
    keyring: HmacKeyring,
    *,
    typ: str,
    issuer: str,
    audience: str,
    ttl_s: int,
    claims: Mapping[str, Any],
    now: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """Like `mint`, also returning the exact payload signed (no need to decode it again)."""
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = dict(claims)
    payload.update(
        iss=issuer,
        aud=audience,
        iat=issued,
        nbf=issued,
        exp=issued + ttl_s,
        jti=payload.get("jti") or uuid.uuid4().hex,
    )
    if not isinstance(issuer, str):  # as jwt.encode refuses it
        raise TypeError("Issuer (iss) must be a string.")
    body = _b64(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    signing_input = _header_segment(typ, _kid(keyring.current)) + b"." + body
    signature = hmac.new(_signing_key(keyring.current), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + _b64(signature)).decode("utf-8"), payload


def _b64(data: bytes) -> bytes:
    """base64url without padding (PyJWT's `base64url_encode`)."""
    return base64.urlsafe_b64encode(data).replace(b"=", b"")


@functools.lru_cache(maxsize=64)
def _kid(secret: bytes) -> str:
    """The key id of a signing secret (derived once per secret, not per token)."""
    return derive_kid(secret)


@functools.lru_cache(maxsize=64)
def _header_segment(typ: str, kid: str) -> bytes:
    """The encoded header PyJWT makes for these headers: typ, alg and kid, sorted keys."""
    header = {"typ": typ, "alg": ALGORITHM, "kid": kid}
    if not typ:
        del header["typ"]  # as PyJWT drops an empty one
    return _b64(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


@functools.lru_cache(maxsize=16)
def _signing_key(secret: bytes) -> bytes:
    """The secret as PyJWT's HS256 signs with it, checked once by PyJWT's own HMAC
    `prepare_key` (InvalidKeyError for an asymmetric key, a certificate or a JWK), with its
    warning for a short secret."""
    algorithm = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)
    key: bytes = algorithm.prepare_key(secret)
    short = algorithm.check_key_length(key)
    if short:
        warnings.warn(short, jwt.warnings.InsecureKeyLengthWarning, stacklevel=3)
    return key


def verify(
    keyring: HmacKeyring,
    token: str,
    *,
    typ: str,
    issuer: str,
    audience: str,
    leeway_s: int = DEFAULT_LEEWAY_S,
    check_expiry: bool = True,
    now: float | None = None,
) -> dict[str, Any]:
    """Return the verified claims, or raise the TokenError subclass that names the defect."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16_384:
        raise TokenMalformed("token is not a compact JWS")
    if len(token) <= CHECKED_TOKEN_CHARS:
        # a fresh copy each time: a caller may change the claims it was given
        claims: dict[str, Any] = json.loads(_checked_claims(keyring, token, typ, issuer,
                                                            audience))
    else:
        claims = _check(keyring, token, typ, issuer, audience)
    _check_times(claims, typ, leeway_s, check_expiry, time.time() if now is None else now)
    return claims


@functools.lru_cache(maxsize=CHECKED_TOKENS)
def _checked_claims(keyring: HmacKeyring, token: str, typ: str, issuer: str,
                    audience: str) -> str:
    """`_check`'s claims as JSON, remembered for the most recent tokens (an error is not)."""
    return json.dumps(_check(keyring, token, typ, issuer, audience))


def _check(keyring: HmacKeyring, token: str, typ: str, issuer: str,
           audience: str) -> dict[str, Any]:
    """The claims of `token` once its header, signature, issuer, audience and registered
    claims are checked (not its times); else the TokenError that names the defect."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:  # DecodeError, or a header PyJWT refuses (a kid
        # that is no string): a forged token is malformed, never an unhandled error
        raise TokenMalformed("token header cannot be decoded") from exc
    if header.get("alg") != ALGORITHM:
        raise TokenMalformed(f"token algorithm must be {ALGORITHM}")
    if header.get("typ") != typ:
        raise TokenWrongType(f"expected a {typ} token")
    kid = header.get("kid")
    key = keyring.key_for(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenUnknownKey(f"{typ} token key id is not in the {keyring.name} keyring")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={
                "require": list(REGISTERED_CLAIMS),
                "verify_exp": False,  # checked below against one clock, with leeway
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise TokenWrongAudience(f"{typ} token is not for audience {audience}") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenWrongIssuer(f"{typ} token issuer is not {issuer}") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise TokenMissingClaim(f"{typ} token lacks claim {exc.claim}") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenBadSignature(f"{typ} token signature does not verify") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenMalformed(f"{typ} token is malformed") from exc
    return claims


def _check_times(
    claims: Mapping[str, Any], typ: str, leeway_s: int, check_expiry: bool, now: float
) -> None:
    """Validate exp/nbf (numbers, within leeway); exp is skipped when the caller says so."""
    for name in ("exp", "nbf", "iat"):
        if not isinstance(claims.get(name), int | float) or isinstance(claims.get(name), bool):
            raise TokenMalformed(f"{typ} token claim {name} is not a number")
    if check_expiry and claims["exp"] + leeway_s < now:
        raise TokenExpired(f"{typ} token has expired")
    if check_expiry and claims["nbf"] - leeway_s > now:
        raise TokenNotYetValid(f"{typ} token is not valid yet")
