"""An LTI 1.3 platform EMULATOR for the tests (no LMS runs here): what an LMS does towards
a tool, written here with PyJWT and cryptography, on loopback.

It has its own RSA key and publishes it (`/jwks`), starts logins at Forge (OIDC login
initiation), answers Forge's authorization redirect with a signed launch id_token (resource
link or deep linking), serves the OAuth2 token endpoint (client credentials, checking
Forge's client assertion against Forge's own published key set), Names and Role
Provisioning (`/memberships/<course>`) and records Assignment and Grade Services score
posts (`/lineitems/<id>/scores`) for assertions. Knobs for the attacks: the key it signs
with (`signing_key`: a forgery), `claims` overrides (issuer, audience, deployment, exp),
and `down` (every grade post answers 503).

The roster is paged as NRPS pages it: with `page_size` > 0 each answer holds that many of
`members` and, while more remain, a `Link: <...?page=N>; rel="next"` header. Knobs: `endless`
(every page links a next one, past the end too), `next_link` (the next URL every page
names instead: another host, or the page itself), `next_rel` (the rel parameter's value as
written, e.g. `Next` or `"next last"`), `link_header` (the whole Link header each page
sends instead, as written: hostile headers), `page_delay_s` (each page answers that late),
`padding` (characters of filler in each member served: big pages) and `roster_gate` (each
page waits until it is set). `roster_pages` records each page URL served.

Helpers for other tests (the classroom end-to-end test):

    launch_learner(platform_base_url: str, emulator: LtiPlatformEmulator,
                   assignment_id: str, user: str) -> Landing

        `platform_base_url` is Forge's (spawn_service's) base URL. Runs a resource-link
        launch of `user` (a learner) from the emulator's course `emulator.course_id` into
        the activity naming `assignment_id`; returns `Landing(client, url, page)`: an
        httpx.Client holding the learner's session cookie, the landing URL
        (`/lti/assignment/<id>`, with the Start button) and that page's text. The course
        must belong to the assignment's cohort: made by a deep linking launch, or linked by
        the cohort's instructor with `POST /v1/cohorts/<cohort>/lti-course`
        {"platform": emulator.name, "context_id": emulator.course_id}.

    emulator.wait_for_grade(user: str, timeout: float) -> dict

        Blocks until a score for `user` was posted (any line item), returns its JSON body
        (scoreGiven, scoreMaximum, activityProgress, gradingProgress, timestamp, userId).

    emulator.registration(tenant: str, forge_base_url: str) -> dict
        The `platforms:` entry of Forge's LTI file for this emulator.

    write_lti_file(tmp: Path, forge_base_url: str, platforms: dict) -> Path
        Forge's LTI file with a fresh tool key: set FORGE_LTI_FILE to it for spawn_service
        AND the scoreboard (the scoreboard posts the grades), e.g.
        `write_lti_file(tmp, spawn_url, {emu.name: emu.registration("acme", spawn_url)})`.

    Start the emulator with `with lti_platform() as emu:` and set `emu.forge_jwks_url` to
    `<spawn_url>/lti/jwks` (its token endpoint checks Forge's client assertions there).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from jwt.algorithms import RSAAlgorithm

from ..live_server import live_server, reserve_port

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
LEARNER_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class LtiPlatformEmulator:
    """A running platform emulator and what it recorded."""

    issuer: str
    name: str = "emulator"
    client_id: str = "forge-tool-1"
    deployment_id: str = "dep-1"
    course_id: str = "course-101"
    course_title: str = "Network Defence 101"
    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    kid: str = "emu-key-1"
    signing_key: rsa.RSAPrivateKey | None = None  # None: sign with `key` (the published one)
    claims: dict[str, Any] = field(default_factory=dict)  # overrides of the next launches
    down: bool = False
    scores: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> scope
    members: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 0  # 0: the whole roster in one answer
    endless: bool = False  # every roster page links a next one
    next_link: str | None = None  # the next URL every roster page names instead
    next_rel: str = '"next"'  # the next link's rel parameter, as written
    link_header: str | None = None  # the whole Link header every roster page sends instead
    page_delay_s: float = 0.0  # each roster page answers this late
    padding: int = 0  # filler characters in each roster member served
    roster_gate: threading.Event = field(default_factory=lambda: _opened())
    roster_pages: list[str] = field(default_factory=list)  # roster page URLs served
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # login_hint -> launch
    last_id_token: str = ""
    forge_jwks_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def registration(self, tenant: str, forge_base_url: str) -> dict[str, Any]:
        """This emulator's entry under `platforms:` of Forge's LTI file."""
        if forge_base_url:
            self.forge_jwks_url = forge_base_url.rstrip("/") + "/lti/jwks"
        return {"tenant": tenant, "issuer": self.issuer, "client_id": self.client_id,
                "deployment_ids": [self.deployment_id],
                "auth_login_url": f"{self.issuer}/auth", "auth_token_url": f"{self.issuer}/token",
                "key_set_url": f"{self.issuer}/jwks"}

    def lineitem(self, assignment_id: str) -> str:
        return f"{self.issuer}/lineitems/{assignment_id}"

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def login_url(self, forge_base_url: str, user: str, *, roles: tuple[str, ...] = (
            LEARNER_ROLE,), message: str = "LtiResourceLinkRequest",
            custom: dict[str, str] | None = None, course_id: str | None = None) -> str:
        """Start a launch of `user`: the login initiation URL the browser is sent to."""
        hint = secrets.token_urlsafe(12)
        with self._lock:
            self.pending[hint] = {"user": user, "roles": list(roles), "message": message,
                                  "custom": custom or {},
                                  "course": course_id or self.course_id}
        base = forge_base_url.rstrip("/")
        return f"{base}/lti/login?" + urlencode({
            "iss": self.issuer, "login_hint": hint, "target_link_uri": f"{base}/lti/launch",
            "client_id": self.client_id, "lti_deployment_id": self.deployment_id})

    def id_token(self, launch: dict[str, Any], nonce: str, redirect_uri: str) -> str:
        """The signed launch message (with the overrides of `claims`)."""
        now = int(time.time())
        course = launch["course"]
        body: dict[str, Any] = {
            "iss": self.issuer, "aud": self.client_id, "sub": launch["user"], "iat": now,
            "exp": now + 300, "nonce": nonce, "name": launch["user"].title(),
            CLAIM + "deployment_id": self.deployment_id,
            CLAIM + "message_type": launch["message"], CLAIM + "version": "1.3.0",
            CLAIM + "roles": launch["roles"],
            CLAIM + "context": {"id": course, "title": self.course_title},
            CLAIM + "target_link_uri": redirect_uri,
            "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice": {
                "context_memberships_url": f"{self.issuer}/memberships/{course}",
                "service_versions": ["2.0"]},
        }
        custom = launch["custom"]
        if launch["message"] == "LtiResourceLinkRequest":
            body[CLAIM + "resource_link"] = {"id": f"rl-{custom.get('forge_assignment', 'x')}"}
            body[CLAIM + "custom"] = custom
            body["https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"] = {
                "scope": [SCORE_SCOPE],
                "lineitem": self.lineitem(custom.get("forge_assignment", "none"))}
        else:
            body["https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"] = {
                "deep_link_return_url": f"{self.issuer}/deep-link-return",
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["window"], "data": "emu-dl-data"}
        body.update(self.claims)
        for k in [k for k, v in body.items() if v is None]:
            del body[k]
        token = jwt.encode(body, self.signing_key or self.key, algorithm="RS256",
                           headers={"kid": self.kid})
        self.last_id_token = token
        return token

    def wait_for_grade(self, user: str, timeout: float) -> dict[str, Any]:
        """The score posted for `user` (waits up to `timeout` seconds for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [s for s in self.scores if s["body"].get("userId") == user]
            if found:
                return dict(found[-1]["body"])
            time.sleep(0.1)
        raise AssertionError(f"no grade was posted for {user} within {timeout} s")

    def forge_keys(self) -> jwt.PyJWKClient:
        return jwt.PyJWKClient(self.forge_jwks_url)

    def verify_from_forge(self, token: str, audience: str) -> dict[str, Any]:
        """A JWT Forge signed (deep linking response, client assertion), checked with the key
        set Forge publishes, as a platform does."""
        key = self.forge_keys().get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"],
                                            audience=audience)
        return claims


def _opened() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate


def _bearer(emu: LtiPlatformEmulator, request: Request, scope: str) -> bool:
    value = request.headers.get("authorization", "")
    token = value.removeprefix("Bearer ")
    return emu.tokens.get(token) == scope


def _app(emu: LtiPlatformEmulator) -> FastAPI:
    app = FastAPI()

    @app.get("/jwks")
    async def jwks() -> Response:
        return JSONResponse(emu.jwks())

    @app.get("/auth")
    async def auth(request: Request) -> Response:
        q = request.query_params
        launch = emu.pending.get(q.get("login_hint", ""))
        if (launch is None or q.get("client_id") != emu.client_id
                or q.get("response_mode") != "form_post" or q.get("scope") != "openid"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        token = emu.id_token(launch, q["nonce"], q["redirect_uri"])
        # What the LMS page auto-posts back to the tool (a browser would submit it).
        return JSONResponse({"action": q["redirect_uri"],
                             "fields": {"id_token": token, "state": q["state"]}})

    @app.post("/token")
    async def token(request: Request) -> Response:
        form = dict(parse_qs((await request.body()).decode()))
        fields = {k: v[0] for k, v in form.items()}
        try:
            claims = emu.verify_from_forge(fields.get("client_assertion", ""),
                                           f"{emu.issuer}/token")
        except jwt.PyJWTError:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if claims.get("iss") != emu.client_id or fields.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        value = secrets.token_urlsafe(24)
        emu.tokens[value] = fields.get("scope", "")
        return JSONResponse({"access_token": value, "token_type": "Bearer",
                             "expires_in": 3600, "scope": fields.get("scope", "")})

    @app.post("/lineitems/{item}/scores")
    async def scores(item: str, request: Request) -> Response:
        if emu.down:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        if not _bearer(emu, request, SCORE_SCOPE):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if request.headers.get("content-type") != "application/vnd.ims.lis.v1.score+json":
            return JSONResponse({"error": "content type"}, status_code=415)
        body = await request.json()
        with emu._lock:
            emu.scores.append({"lineitem": item, "body": body})
        return Response(status_code=204)

    @app.get("/memberships/{course}")
    async def memberships(course: str, request: Request) -> Response:
        if not _bearer(emu, request, NRPS_SCOPE):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        with emu._lock:
            emu.roster_pages.append(str(request.url))
        await asyncio.to_thread(emu.roster_gate.wait, 60)
        await asyncio.sleep(emu.page_delay_s)
        page = int(request.query_params.get("page", "0"))
        size = emu.page_size or max(1, len(emu.members))
        members = [{**m, "name": "x" * emu.padding} if emu.padding else m
                   for m in emu.members[page * size:(page + 1) * size]]
        more = emu.endless or (page + 1) * size < len(emu.members)
        following = emu.next_link or f"{emu.issuer}/memberships/{course}?page={page + 1}"
        headers = ({"link": f'<{following}>; rel={emu.next_rel}'} if more or emu.next_link
                   else {})
        if emu.link_header is not None:
            headers = {"link": emu.link_header}
        return JSONResponse({"id": f"{emu.issuer}/memberships/{course}",
                             "context": {"id": course}, "members": members}, headers=headers)

    return app


@contextmanager
def lti_platform() -> Iterator[LtiPlatformEmulator]:
    """Start an emulator on a loopback port."""
    sock = reserve_port()  # held until served: the settings name it
    port = sock.getsockname()[1]
    emu = LtiPlatformEmulator(issuer=f"http://127.0.0.1:{port}")
    with live_server(_app(emu), sock=sock):
        yield emu


@dataclass
class Landing:
    """Where a launched person arrived: their browser, the page's URL and text."""

    client: httpx.Client
    url: str
    page: str
    status: int = 200


def run_launch(forge_base_url: str, login_url: str,
               client: httpx.Client | None = None) -> tuple[httpx.Client, httpx.Response]:
    """A browser following a launch: login initiation at Forge, the platform's auth step,
    the form post back to Forge. Returns the browser and Forge's answer to the launch."""
    browser = client or httpx.Client(base_url=forge_base_url, timeout=30)
    started = browser.get(login_url, follow_redirects=False)
    if started.status_code != 302:
        return browser, started
    auth = started.headers["location"]
    form = httpx.get(auth, timeout=30).json()
    # The LMS page auto-posts the form: a cross-site post, as a browser labels it.
    lms = "{0.scheme}://{0.netloc}".format(urlsplit(auth))
    answer = browser.post(form["action"], data=form["fields"], follow_redirects=False,
                          headers={"origin": lms, "sec-fetch-site": "cross-site"})
    return browser, answer


def landing_of(answer: httpx.Response) -> str:
    """The path Forge's "Signed in" page moves on to."""
    found = re.search(r'url=([^"]+)"', answer.text)
    assert found is not None, answer.text
    return found.group(1)


def launch_learner(platform_base_url: str, emulator: LtiPlatformEmulator,
                   assignment_id: str, user: str) -> Landing:
    """A learner's resource-link launch into `assignment_id` (see the module docstring)."""
    url = emulator.login_url(platform_base_url, user,
                             custom={"forge_assignment": assignment_id})
    browser, answer = run_launch(platform_base_url, url)
    assert answer.status_code == 200, answer.text
    path = landing_of(answer)
    page = browser.get(path)
    return Landing(browser, path, page.text, page.status_code)


def new_kid() -> str:
    return "emu-" + uuid.uuid4().hex[:8]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class LtiForge:
    """spawn_service with an LTI file registering the emulator(s), live on loopback."""

    url: str
    app: Any
    lti_file: str
    environ: dict[str, str]

    @property
    def db(self) -> Any:
        return self.app.state.spawn.ctx.db

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def write_lti_file(tmp: Path, forge_base_url: str, platforms: dict[str, dict[str, Any]]
                   ) -> Path:
    """Forge's LTI file (`FORGE_LTI_FILE`, for spawn_service and the scoreboard alike) in
    `tmp`: a tool key made once, this site's URL and `platforms` (name -> registration)."""
    import yaml

    from forge.identity.lti_config import generate_key

    key = tmp / "lti-tool.pem"
    if not key.exists():
        generate_key(key)
    path = tmp / "lti.yaml"
    path.write_text(yaml.safe_dump({"tool": {"base_url": forge_base_url,
                                             "private_key_file": str(key)},
                                    "platforms": platforms}))
    return path


@contextmanager
def forge_with_lti(tmp: Path, environ: dict[str, str],
                   platforms: dict[str, dict[str, Any]]) -> Iterator[LtiForge]:
    """Start spawn_service (settings from `environ`) whose LTI file registers `platforms`."""
    from forge.config import load_settings
    from forge.services.spawn.app import build_app

    sock = reserve_port()  # held until served: the settings name it
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    path = write_lti_file(tmp, base, platforms)
    env = {**environ, "FORGE_LTI_FILE": str(path)}
    app = build_app(load_settings(env))
    with live_server(app, sock=sock):
        yield LtiForge(base, app, str(path), env)
