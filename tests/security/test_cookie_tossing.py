"""Attack: a sibling subdomain (or a plain-http page of the site) plants a session cookie.

`forge_session` had no name prefix: a page on `evil.example.edu` could set
`forge_session=<mallory's session>; Domain=example.edu` and the browser sent it to
`forge.example.edu`, signed in as mallory, whose lab's terminal recordings then kept what
the victim typed (cookie tossing). Over https every Forge cookie now goes out under the
`__Host-` prefix (Secure, Path=/, no Domain: only the site itself can set it), and a plain
`forge_` cookie arriving over https is ignored, as is a `__Secure-forge_session` (a sibling
served over https may set a `__Secure-` cookie for the parent domain), on every service (spawn, scoreboard, the
lab nodes and the terminal's websocket read cookies through the same middleware). Plain
http on loopback keeps the plain names (`__Host-` needs Secure).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from forge.bus import NatsServer
from forge.identity.apikeys import create_api_key
from forge.services.common.host_cookies import incoming
from forge.services.spawn.app import build_app
from forge.services.spawn.web.lti_login_state import cookie_name as lti_cookie
from forge.services.spawn.web.lti_pages import DL_COOKIE as LTI_DL
from forge.services.spawn.web.security import csrf_token, learner_session

from ..services.conftest import shipped_spawn_settings

HTTPS = {"x-forwarded-proto": "https", "origin": "https://testserver"}
pytestmark = pytest.mark.usefixtures("sqlite_only_store")


@pytest.fixture
def client(tmp_path: Path, nats: NatsServer) -> Iterator[TestClient]:
    with TestClient(build_app(shipped_spawn_settings(tmp_path / "storage", nats)),
                    follow_redirects=False) as test_client:
        yield test_client


def _home(client: TestClient, cookie: str, headers: dict[str, str] = HTTPS) -> str:
    client.cookies.clear()
    return str(client.get("/", headers={**headers, "cookie": cookie}).headers["location"])


def _terminal_close(client: TestClient, session: str) -> int:
    """The close code of a terminal socket opened with `session` as __Host- over wss."""
    client.cookies.clear()
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(
            "/v1/scenarios/scn-0123456789abcdef/terminal",
            headers={"x-forwarded-proto": "wss", "cookie": f"__Host-forge_session={session}"}):
        pass
    return int(closed.value.code)


def test_a_session_cookie_tossed_from_a_sibling_site_is_ignored(client: TestClient) -> None:
    state = client.app.state.spawn  # type: ignore[attr-defined]
    key = create_api_key(state.ctx.db, "acme", "amy").plaintext
    signed = client.post("/signin", data={"api_key": key}, headers=HTTPS)
    assert signed.status_code == 303, signed.text
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("__Host-forge_session=") and "Secure" in cookie, cookie
    assert "Path=/" in cookie and "domain" not in cookie.lower(), cookie
    amy = signed.cookies["__Host-forge_session"]
    assert _home(client, f"__Host-forge_session={amy}") == "/tracks"

    mallory = learner_session(state.settings, "acme", "mallory")
    assert _home(client, f"forge_session={mallory}") == "/signin"  # tossed: not read
    # A sibling served over https can set __Secure- (with Domain=): only __Host- is ours.
    assert _home(client, f"__Secure-forge_session={mallory}") == "/signin"
    assert _home(client, f"__Secure-forge_session={mallory}; __Host-forge_session={amy}"
                 ) == "/tracks"
    assert _home(client, f"forge_session={mallory}; __Host-forge_session={amy}") == "/tracks"
    assert _home(client, f"forge_session={mallory}", {}) == "/tracks"  # plain http: as before

    # The terminal's websocket behind a proxy that says wss for it (Traefik) is https too.
    assert _terminal_close(client, amy) == 4404  # signed in as amy; no such lab of hers

    out = client.post("/signout", data={"csrf": csrf_token(state.settings, amy)},
                      headers={**HTTPS, "cookie": f"__Host-forge_session={amy}"})
    assert any(c.startswith('__Host-forge_session=""') and "Max-Age=0" in c
               for c in out.headers.get_list("set-cookie")), out.headers
    # The path-scoped sign-in state (LTI) cannot be __Host-: it is __Secure- there.
    lti = lti_cookie("some-state")
    assert incoming(f"__Secure-{lti}=s; {lti}=t; other=1") == f"{lti}=s; other=1"
    assert incoming(f"__Secure-{LTI_DL}=d; __Secure-forge_ops=o; __Secure-forge_oidc=s"
                    ) == ""  # set __Host-: a __Secure- one is a sibling's
    # It counts only with the browser's LTI binding, which is __Host- (test_lti_launch).
    assert incoming("__Secure-forge_lti=b; forge_lti=c; __Host-forge_lti=a") == "forge_lti=a"
