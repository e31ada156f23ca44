"""The four token kinds of Forge and what each must carry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from forge.config.keyring import HmacKeyring
from forge.config.settings import Settings
from forge.tokens import codec
from forge.tokens.errors import TokenError, TokenMissingClaim

ISSUER = "forge_spawn_service"


@dataclass(frozen=True)
class TokenKind:
    """A token type: header `typ`, audience, default lifetime, claims it must carry."""

    typ: str
    audience: str
    ttl_s: int
    required: tuple[str, ...]


SAT = TokenKind(
    "SAT",
    "forge_orchestrator",
    15 * 60,
    ("scenario_id", "track", "template_id", "sub", "tenant_id", "plan", "et_jti"),
)
ET = TokenKind(
    "ET",
    "forge_platform",
    60 * 60,
    ("sub", "tenant_id", "plan", "tracks", "retention_days", "source"),
)
RECEIPT = TokenKind("RCPT", "forge_spawn", 30 * 24 * 3600, ("tenant_id", "plan", "retention_days"))
ACCESS = TokenKind("ACC", "forge_access", 15 * 60, ("scenario_id", "sub", "tenant_id"))
SESSION = TokenKind("SES", "forge_web", 12 * 3600, ("sub", "tenant_id", "scope"))
TERMINAL = TokenKind(
    "TTY", "forge_orchestrator_tty", 60, ("scenario_id", "sub", "tenant_id", "host")
)
# A checkout started on the plans page: which plan, bound to the browser that started it
# (the hash of a cookie nonce); completed once (its jti is consumed) to sign the buyer in.
CHECKOUT = TokenKind("CHK", "forge_checkout", 15 * 60, ("plan", "nonce_sha256"))
# spawn_service → the lab's node at sign-out: close this learner's terminals of one lab
TERMINAL_CLOSE = TokenKind(
    "TTYEND", "forge_orchestrator_tty_close", 60, ("scenario_id", "sub", "tenant_id")
)

# An OIDC sign-in under way (issue 18): kept in an HttpOnly cookie of the browser that began
# it, so the provider's callback is accepted only there (state, nonce, PKCE verifier).
OIDC_PENDING = TokenKind(
    "OIDCP", "forge_oidc_callback", 10 * 60, ("tenant_id", "state", "nonce", "verifier")
)

# An LTI 1.3 login under way (issue 18 item 4): the platform, state and nonce, kept in a
# cookie of the browser the platform sent to the login initiation, and the hash of that
# browser's LTI binding cookie (__Host- over https); the launch must match both.
LTI_PENDING = TokenKind("LTIP", "forge_lti_launch", 10 * 60,
                        ("platform", "state", "nonce", "browser_sha256"))
# A verified LTI deep linking request, carried by the instructor's pick form to its POST.
LTI_DEEP_LINK = TokenKind("LTIDL", "forge_lti_deep_link", 30 * 60, ("platform", "sub",
                                                                     "deployment_id"))
# One service's call to another (spawn_service → the orchestrator, a lab node, the
# scoreboard): signed with the SAT keyring, which every service holds and every rotation
# rolls out to all of them, so those calls never depend on OPERATOR_TOKEN agreeing. Each
# token is for one request (service, method, target, body digest:
# forge.services.common.auth), so whoever receives it in place of the service can only
# send that same request to it again.
SERVICE = TokenKind("SVC", "forge_internal", 60, ("sub", "svc", "htm", "htu", "bh"))


class TokenMismatch(TokenError):
    """Two tokens that must describe the same caller or scenario disagree."""

    code = "token_mismatch"


def keyring_for(settings: Settings, kind: TokenKind) -> HmacKeyring:
    """The keyring that signs and verifies `kind` (access tokens share the SAT keyring)."""
    rings = {
        "SAT": settings.sat,
        "ACC": settings.sat,
        "SES": settings.sat,
        "TTY": settings.sat,
        "TTYEND": settings.sat,
        "ET": settings.et,
        "RCPT": settings.receipt,
        "CHK": settings.receipt,
        "OIDCP": settings.sat,
        "LTIP": settings.sat,
        "LTIDL": settings.sat,
        "SVC": settings.sat,
    }
    return rings[kind.typ]


def mint_token(
    keyring: HmacKeyring,
    kind: TokenKind,
    claims: Mapping[str, Any],
    *,
    ttl_s: int | None = None,
    now: float | None = None,
) -> str:
    """Mint a token of `kind`; refuses claims that lack what the kind requires."""
    return mint_token_claims(keyring, kind, claims, ttl_s=ttl_s, now=now)[0]


def mint_token_claims(
    keyring: HmacKeyring,
    kind: TokenKind,
    claims: Mapping[str, Any],
    *,
    ttl_s: int | None = None,
    now: float | None = None,
) -> tuple[str, dict[str, Any]]:
    """Mint a token of `kind` and return it with the full payload it carries."""
    missing = [c for c in kind.required if claims.get(c) in (None, "")]
    if missing:
        raise ValueError(f"{kind.typ} token needs claims: {', '.join(missing)}")
    return codec.mint_with_claims(
        keyring,
        typ=kind.typ,
        issuer=ISSUER,
        audience=kind.audience,
        ttl_s=kind.ttl_s if ttl_s is None else ttl_s,
        claims=claims,
        now=now,
    )


def verify_token(
    keyring: HmacKeyring,
    kind: TokenKind,
    token: str,
    *,
    check_expiry: bool = True,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a token of `kind` and that it carries the kind's claims."""
    claims = codec.verify(
        keyring,
        token,
        typ=kind.typ,
        issuer=ISSUER,
        audience=kind.audience,
        check_expiry=check_expiry,
        now=now,
    )
    for name in kind.required:
        if claims.get(name) in (None, ""):
            raise TokenMissingClaim(f"{kind.typ} token lacks claim {name}")
    return claims


def check_sat_et_binding(sat: Mapping[str, Any], et: Mapping[str, Any]) -> None:
    """A SAT must name the ET it was minted from, and agree on subject, tenant and plan."""
    if sat.get("et_jti") != et.get("jti"):
        raise TokenMismatch("SAT was not minted from this ET")
    for claim in ("sub", "tenant_id", "plan"):
        if sat.get(claim) != et.get(claim):
            raise TokenMismatch(f"SAT and ET disagree on {claim}")
    tracks = et.get("tracks")
    if not isinstance(tracks, list) or sat.get("track") not in tracks:
        raise TokenMismatch("SAT track is not among the ET's entitled tracks")
