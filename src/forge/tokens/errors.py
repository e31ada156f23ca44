"""Typed token errors: each defect has its own class so callers and audits can tell them apart.

Messages never contain the token or any secret.
"""

from __future__ import annotations


class TokenError(Exception):
    """Base of every token verification failure; `code` is stable for APIs and audits."""

    code = "token_invalid"


class TokenMalformed(TokenError):
    code = "token_malformed"


class TokenBadSignature(TokenError):
    code = "token_bad_signature"


class TokenUnknownKey(TokenError):
    code = "token_unknown_key"


class TokenWrongType(TokenError):
    code = "token_wrong_type"


class TokenWrongAudience(TokenError):
    code = "token_wrong_audience"


class TokenWrongIssuer(TokenError):
    code = "token_wrong_issuer"


class TokenExpired(TokenError):
    code = "token_expired"


class TokenNotYetValid(TokenError):
    code = "token_not_yet_valid"


class TokenMissingClaim(TokenError):
    code = "token_missing_claim"


class TokenReplayed(TokenError):
    code = "token_replayed"
