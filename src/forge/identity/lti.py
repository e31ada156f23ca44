"""LTI 1.3 launches into Forge, checked with pylti1p3's `MessageLaunch`.

`begin_login` answers a platform's OIDC login initiation: a fresh state and nonce (kept in
the browser that started, by the caller) and the platform's authorization URL.
`verify_launch` checks the id_token a platform posts back: the state must be this
browser's and the nonce this login's (pylti1p3's state and nonce checks, fed from the
caller's signed cookie), the registration is found by issuer and client id, the signature
is verified against the platform's published keys (fetched by us: SSRF-checked, bounded,
cached), the deployment must be registered and the message well formed (pylti1p3's
validators); on top we require exp and iat, an audience that is our client id (with azp
when there are several) and the platform the login began with. Every refusal is
`LtiRefused`: a sentence for the person and a reason for the operator's log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from authlib.common.security import generate_token
from pylti1p3.cookie import CookieService
from pylti1p3.deep_link import DeepLink
from pylti1p3.deep_link_resource import DeepLinkResource
from pylti1p3.exception import LtiException
from pylti1p3.lineitem import LineItem
from pylti1p3.message_launch import MessageLaunch
from pylti1p3.registration import Registration
from pylti1p3.request import Request
from pylti1p3.tool_config.dict import ToolConfDict

from forge.errors import ForgeError
from forge.identity.lti_config import LtiRegistry, Platform
from forge.identity.names import valid_id

TIMEOUT_S = 5.0
MAX_JWKS_BYTES = 256 * 1024
CACHE_S = 3600.0
REFETCH_S = 30.0  # a token naming an unknown key fetches the key set again at most this often
MAX_ID_TOKEN = 64 * 1024
LEEWAY_S = 60  # for the platform's clock, as single sign-on allows (forge.identity.oidc)
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
DL_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
RESOURCE_LINK, DEEP_LINKING = "LtiResourceLinkRequest", "LtiDeepLinkingRequest"
_MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
TEACHING_ROLES = frozenset({  # exact context roles only: system/institution roles never count
    _MEMBERSHIP + "#Instructor", _MEMBERSHIP + "#Administrator",
    _MEMBERSHIP + "#ContentDeveloper", _MEMBERSHIP + "/Instructor#TeachingAssistant"})
ASSIGNMENT_PARAM = "forge_assignment"
_AGAIN = "Open the activity again from your course."


class LtiRefused(ForgeError):
    """A launch from an LMS was refused: `message` for the person, `reason` for the log."""

    def __init__(self, code: str, status: int, message: str, reason: str) -> None:
        super().__init__(code, status, message)
        self.reason = reason


def _untrusted(reason: str) -> LtiRefused:
    return LtiRefused("lti_launch_refused", 401, "Your course's request to open Forge could "
                      "not be trusted, so nothing was opened. " + _AGAIN, reason)


def unknown_platform(reason: str) -> LtiRefused:
    """The refusal for a platform no operator registered."""
    return LtiRefused("lti_platform_unknown", 404, "This learning platform is not registered "
                      "with this Forge site. Ask your administrator.", reason)


@dataclass(frozen=True)
class Pending:
    """What a launch must match, kept in the browser that began the login."""

    platform: str
    state: str
    nonce: str


@dataclass(frozen=True)
class Launch:
    """A verified launch: who (Forge subject, teaches or not), from which course, why."""

    platform: Platform
    message_type: str
    lti_user: str
    subject: str
    teaches: bool
    deployment_id: str
    context_id: str
    context_title: str
    custom: Mapping[str, str]
    lineitem: str | None
    memberships_url: str | None
    deep_link: Mapping[str, Any] | None
    nonce: str
    expires_at: int
    claims: Mapping[str, Any] = field(repr=False, default_factory=dict)


def begin_login(registry: LtiRegistry, params: Mapping[str, str]) -> tuple[Pending, str]:
    """A login initiation (iss, login_hint, target_link_uri, client_id, ...) answered with a
    new state and nonce and the platform's authorization URL."""
    issuer, client_id = params.get("iss", ""), params.get("client_id", "")
    found = ([registry.find(issuer, client_id)] if client_id
             else registry.by_issuer(issuer))
    platforms = [p for p in found if p is not None]
    if len(platforms) != 1:
        raise unknown_platform(f"login initiation from unregistered issuer/client "
                               f"({len(platforms)} registrations match)")
    platform = platforms[0]
    deployment = params.get("lti_deployment_id")
    if deployment and deployment not in platform.config.deployment_ids:
        raise _untrusted(f"login names an unregistered deployment of {platform.name}")
    target = params.get("target_link_uri", "")
    launch_url = registry.url("/lti/launch")
    if target.split("?", 1)[0] != launch_url:
        raise _untrusted("target_link_uri is not this site's launch URL")
    login_hint = params.get("login_hint", "")
    if not login_hint or len(login_hint) > 1024:
        raise _untrusted("login initiation without a usable login_hint")
    pending = Pending(platform.name, generate_token(43), generate_token(43))
    query = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post",
             "prompt": "none", "client_id": platform.config.client_id,
             "redirect_uri": launch_url, "login_hint": login_hint, "state": pending.state,
             "nonce": pending.nonce}
    hint = params.get("lti_message_hint")
    if hint and len(hint) <= 2048:
        query["lti_message_hint"] = hint
    sep = "&" if "?" in platform.config.auth_login_url else "?"
    return pending, platform.config.auth_login_url + sep + urlencode(query)


class KeyCache:
    """Platforms' published key sets, fetched with a bound, a timeout and no redirects."""

    def __init__(self) -> None:
        self._sets: dict[str, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def get(self, platform: Platform, *, fresh: bool = False) -> dict[str, Any]:
        """The key set of `platform` (fetched again when `fresh`: a rotation)."""
        url = platform.config.key_set_url
        with self._lock:
            cached = self._sets.get(url)
        age = time.monotonic() - cached[1] if cached is not None else None
        if cached is not None and age is not None and (
                age < REFETCH_S or (not fresh and age < CACHE_S)):
            return cached[0]  # forged tokens naming new key ids cannot make us fetch
        if not platform.allowed(url):
            raise _untrusted("key set URL not allowed")
        doc = fetch_json_sync(url, MAX_JWKS_BYTES, "key set")
        if not isinstance(doc.get("keys"), list):
            raise _untrusted("key set has no keys")
        with self._lock:
            self._sets[url] = (doc, time.monotonic())
        return doc


def fetch_json_sync(url: str, limit: int, what: str) -> dict[str, Any]:
    """GET a JSON object, at most `limit` bytes, no redirects (LtiRefused otherwise)."""
    try:
        with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client, \
                client.stream("GET", url, headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise _untrusted(f"{what} answered HTTP {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body.extend(chunk)
                if len(body) > limit:
                    raise _untrusted(f"{what} is larger than {limit} bytes")
    except httpx.HTTPError as exc:
        raise _untrusted(f"{what} unreachable ({type(exc).__name__})") from None
    try:
        value = json.loads(bytes(body))
    except ValueError:
        raise _untrusted(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise _untrusted(f"{what} is not a JSON object")
    return value


class _Form(Request):  # type: ignore[misc]
    def __init__(self, form: Mapping[str, str], secure: bool) -> None:
        self._form, self._secure = form, secure

    def is_secure(self) -> bool:
        return self._secure

    def get_param(self, key: str) -> str:
        return self._form.get(key, "")


class _Browser(CookieService):  # type: ignore[misc]
    """The state this browser's signed cookie holds (verified by the caller)."""

    def __init__(self, pending: Pending) -> None:
        self._pending = pending

    def get_cookie(self, name: str) -> str | None:
        ok = hmac.compare_digest(name.encode(), self._pending.state.encode())
        return self._pending.state if ok else None

    def set_cookie(self, name: str, value: str | int, exp: int | None = 3600) -> None:
        return None


class _Session:
    """pylti1p3's session: the nonce must be this login's; nothing else is kept."""

    def __init__(self, pending: Pending) -> None:
        self._pending = pending

    def check_nonce(self, nonce: str) -> bool:
        return isinstance(nonce, str) and hmac.compare_digest(
            nonce.encode(), self._pending.nonce.encode())

    def check_state_is_valid(self, state: str, id_token_hash: str) -> bool:
        return False  # always the cookie's state

    def set_state_valid(self, state: str, id_token_hash: str) -> None:
        return None

    def save_launch_data(self, key: str, jwt_body: Any) -> None:
        return None


class _Launch(MessageLaunch):  # type: ignore[misc,type-arg]
    def __init__(self, form: _Form, conf: ToolConfDict, pending: Pending, platform: Platform,
                 keys: KeyCache) -> None:
        super().__init__(form, conf, _Session(pending), _Browser(pending))
        self._platform, self._keys = platform, keys

    def validate_jwt_signature(self) -> _Launch:
        """pylti1p3's check of the id_token, with LEEWAY_S for the clocks: without it an
        `iat` a moment ahead of ours (the platform's clock a fraction of a second ahead,
        its whole seconds rounded down) was "not yet valid", and that launch refused."""
        public_key, key_alg = self.get_public_key()
        try:
            jwt.decode(self._get_id_token(), public_key, algorithms=[key_alg],
                       options={"verify_aud": False, "require": ["exp", "iat"]},
                       leeway=LEEWAY_S)
        except jwt.InvalidTokenError as exc:
            raise LtiException(f"Can't decode id_token: {exc}") from exc
        return self

    def _get_request_param(self, key: str) -> str:
        value: str = self._request.get_param(key)
        return value

    def fetch_public_key(self, key_set_url: str) -> Any:
        return self._keys.get(self._platform)

    def get_public_key(self) -> tuple[str, str]:
        try:
            found: tuple[str, str] = super().get_public_key()
            return found
        except LtiException:  # a key we do not know yet: the platform rotated its keys
            assert self._registration is not None
            self._registration.set_key_set(self._keys.get(self._platform, fresh=True))  # type: ignore[arg-type]
            again: tuple[str, str] = super().get_public_key()
            return again


def tool_conf(registry: LtiRegistry, platform: Platform) -> ToolConfDict:
    """pylti1p3's view of one registration (keys fetched by us, never by the library)."""
    cfg = platform.config
    conf = ToolConfDict({cfg.issuer: [{
        "default": True, "client_id": cfg.client_id, "auth_login_url": cfg.auth_login_url,
        "auth_token_url": cfg.auth_token_url, "auth_audience": cfg.auth_audience,
        "key_set_url": cfg.key_set_url, "key_set": None,
        "deployment_ids": list(cfg.deployment_ids)}]})
    conf.set_private_key(cfg.issuer, registry.key.private_pem, client_id=cfg.client_id)
    return conf


def _unverified_claims(id_token: str) -> dict[str, Any]:
    try:
        part = id_token.split(".")[1]
        value = json.loads(MessageLaunch.urlsafe_b64decode(part))
    except (IndexError, ValueError, UnicodeDecodeError):
        raise _untrusted("id_token is malformed") from None
    if not isinstance(value, dict):
        raise _untrusted("id_token is malformed")
    return value


def map_subject(platform: Platform, lti_user: str) -> str:
    """The Forge subject of a platform's user: prefix + their id when it is a usable id,
    else prefix + a digest of it (stable, never colliding with another platform's prefix)."""
    candidate = platform.config.subject_prefix + lti_user
    if valid_id(candidate):
        return candidate
    digest = hashlib.sha256(f"{platform.config.issuer}\x00{lti_user}".encode()).hexdigest()
    return platform.config.subject_prefix + "u" + digest[:32]


def teaches_course(roles: object) -> bool:
    """Does a launch's (or roster member's) role list make them staff of the course? Only
    an exact LIS context role of teaching counts, never a role that merely ends like one."""
    return isinstance(roles, list) and any(
        isinstance(r, str) and r in TEACHING_ROLES for r in roles)


def _str(value: object, limit: int = 255) -> str:
    return value if isinstance(value, str) and len(value) <= limit else ""


def verify_launch(registry: LtiRegistry, keys: KeyCache, pending: Pending,
                  form: Mapping[str, str], secure: bool) -> Launch:
    """The verified launch of a posted id_token (see the module docstring)."""
    id_token = form.get("id_token", "")
    if not id_token or len(id_token) > MAX_ID_TOKEN:
        raise _untrusted("launch without a usable id_token")
    claims = _unverified_claims(id_token)
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    platform = next((p for a in audiences if (p := registry.find(claims.get("iss"), a))), None)
    if platform is None:
        raise unknown_platform("launch from an unregistered issuer/audience")
    if platform.name != pending.platform:
        raise _untrusted("launch from another platform than the login")
    if len(audiences) > 1 and claims.get("azp") != platform.config.client_id:
        raise _untrusted("id_token has several audiences and names another authorized party")
    launch = _Launch(_Form(form, secure), tool_conf(registry, platform), pending, platform, keys)
    try:
        launch.validate()
    except LtiRefused:
        raise
    except LtiException as exc:
        raise _untrusted(f"pylti1p3 refused the launch: {str(exc)[:120]}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # claims of odd types
        raise _untrusted(f"launch message is malformed ({type(exc).__name__})") from None
    body: dict[str, Any] = dict(launch.get_launch_data())
    if platform.config.client_id not in audiences:
        raise _untrusted("id_token audience is not this tool")
    message_type = body.get(CLAIM + "message_type")
    if message_type not in (RESOURCE_LINK, DEEP_LINKING):
        raise _untrusted("unsupported LTI message type")
    lti_user = _str(body.get("sub"))
    if not lti_user:
        raise _untrusted("launch without a user")
    roles = body.get(CLAIM + "roles")
    teaches = teaches_course(roles)
    context = body.get(CLAIM + "context")
    context = context if isinstance(context, dict) else {}
    custom = body.get(CLAIM + "custom")
    ags = body.get(AGS_CLAIM)
    nrps = body.get(NRPS_CLAIM)
    lineitem = _str(ags.get("lineitem"), 1024) if isinstance(ags, dict) else ""
    members = _str(nrps.get("context_memberships_url"), 1024) if isinstance(nrps, dict) else ""
    dl = body.get(DL_CLAIM)
    return Launch(
        platform=platform, message_type=str(message_type), lti_user=lti_user,
        subject=map_subject(platform, lti_user), teaches=teaches,
        deployment_id=str(body.get(CLAIM + "deployment_id")),
        context_id=_str(context.get("id")), context_title=_str(context.get("title"), 120),
        custom={str(k): v for k, v in custom.items() if isinstance(v, str)}
        if isinstance(custom, dict) else {},
        lineitem=lineitem if lineitem and platform.allowed(lineitem) else None,
        memberships_url=members if members and platform.allowed(members) else None,
        deep_link=dl if isinstance(dl, dict) else None, nonce=str(body.get("nonce")),
        expires_at=int(body["exp"]), claims=body)


def deep_link_response(registry: LtiRegistry, platform: Platform, deployment_id: str,
                       settings: Mapping[str, Any], assignment_id: str, title: str) -> str:
    """The signed LtiDeepLinkingResponse returning one Forge activity: a resource link to
    our launch URL naming the assignment, with a line item of 100 points; `settings` are
    the request's deep linking settings (its `data` is echoed back)."""
    cfg = platform.config
    registration = (Registration().set_issuer(cfg.issuer).set_client_id(cfg.client_id)
                    .set_tool_private_key(registry.key.private_pem))
    registration.get_kid = lambda: registry.key.kid  # type: ignore[method-assign]
    lineitem = (LineItem().set_label(title).set_score_maximum(100)
                .set_resource_id(assignment_id))
    resource = (DeepLinkResource().set_url(registry.url("/lti/launch")).set_title(title)
                .set_custom_params({ASSIGNMENT_PARAM: assignment_id}).set_lineitem(lineitem))
    link = DeepLink(registration, deployment_id, dict(settings))  # type: ignore[arg-type]
    token: str = link.get_response_jwt([resource])
    return token
