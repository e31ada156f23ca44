"""Probe: bad input that is not a bad field of the body still gets a 4xx naming what was
wrong, never a 500 and never a dropped terminal.

- An ``Origin``/``Referer`` that is no URL at all (``http://[x``: ``urlsplit`` raises
  "Invalid IPv6 URL") was a 500 on every same-origin check: each form post, each cookie
  caller's unsafe API request, the terminal WebSocket's handshake. It is simply not this
  site: 403 ``cross_site_request`` (4403 on the WebSocket).
- A form body the form parser refuses (multipart without a boundary, more than 1,000
  fields) was Starlette's bare 400 ``bad_request`` naming nothing; it is 400
  ``invalid_form`` naming ``body``.
- ``POST /v1/spawn`` without ``request_id`` takes ``X-Request-Id`` as its idempotency key;
  one the logs accept (1-64 characters) but the key does not (8-64) was refused as
  ``request_id``, a field the caller never sent; the refusal names the header now.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from forge.bus import NatsServer
from forge.identity.apikeys import create_api_key
from forge.identity.origin import same_origin
from forge.services.spawn.app import build_app

from ..services.conftest import shipped_spawn_settings

pytestmark = pytest.mark.usefixtures("sqlite_only_store")
ORIGIN = "http://testserver"
NOT_URLS = ["http://[x", "http://[::1", "https://[zz]x", "http://]"]


@pytest.fixture
def client(tmp_path: Path, nats: NatsServer) -> Iterator[TestClient]:
    settings = shipped_spawn_settings(tmp_path / "storage", nats)
    with TestClient(build_app(settings), follow_redirects=False,
                    raise_server_exceptions=False) as test_client:
        yield test_client


def _signed_in(client: TestClient) -> str:
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    key = create_api_key(db, "acme", "alice").plaintext
    resp = client.post("/signin", data={"api_key": key}, headers={"origin": ORIGIN})
    assert resp.status_code == 303, resp.text
    return key


@pytest.mark.parametrize("source", NOT_URLS)
def test_a_source_that_is_no_url_is_not_this_site(source: str) -> None:
    assert not same_origin({"host": "testserver", "origin": source})
    assert not same_origin({"host": "testserver", "referer": source})


def test_malformed_origin_is_403_not_500(client: TestClient) -> None:
    _signed_in(client)
    for source in NOT_URLS:
        for header in ("origin", "referer"):
            for path in ("/signin", "/signout", "/checkout", "/signin/continue"):
                resp = client.post(path, data={"a": "b"}, headers={header: source})
                assert resp.status_code == 403, (path, header, source, resp.text[:200])
            api = client.post("/v1/spawn", json={"track": "netplus"}, headers={header: source})
            assert api.status_code == 403, api.text
            assert api.json()["error"] == "cross_site_request"
            gone = client.delete("/v1/scenarios/scn-0123456789abcdef", headers={header: source})
            assert gone.status_code == 403, gone.text
    # A refused form names the header that decided it, as the API's refusals do (it said
    # "form posts must come from this site" and named nothing).
    for sent, named in [({"origin": "https://evil.example"}, "Origin"), ({}, "Origin"),
                        ({"referer": "https://evil.example/x"}, "Referer"),
                        ({"sec-fetch-site": "cross-site", "origin": ORIGIN}, "Sec-Fetch-Site")]:
        resp = client.post("/signin", data={"a": "b"}, headers=sent)
        assert resp.status_code == 403, (sent, resp.text[:300])
        assert f"{named}: form posts must come from this site; this one" in resp.text, sent
    # A client asking for JSON gets the API's error body, not a page to scrape.
    asked = client.post("/signin", data={"a": "b"}, headers={"accept": "application/json"})
    assert asked.status_code == 403 and asked.json() == {
        "error": "cross_site_request",
        "message": "Origin: form posts must come from this site; this one sends neither "
                   "Origin nor Referer",
        "details": [{"field": "origin",
                     "problem": "this one sends neither Origin nor Referer"}]}


def test_terminal_handshake_with_malformed_origin_is_refused_not_500(
        client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(
            "/v1/scenarios/scn-0123456789abcdef/terminal", headers={"origin": "http://[x"}):
        pass
    assert closed.value.code == 4403


def test_a_form_the_parser_refuses_names_the_body(client: TestClient) -> None:
    for content, kind in [(b"garbage", "multipart/form-data"),
                          (b"&".join(b"k%d=v" % i for i in range(1500)),
                           "application/x-www-form-urlencoded")]:
        resp = client.post("/signin", content=content,
                           headers={"origin": ORIGIN, "content-type": kind})
        assert resp.status_code == 400, resp.text[:300]
        assert "body:" in resp.text and "bad_request" not in resp.text, resp.text[:300]
    # A body of another type was read as an empty form: "enter one of them" said of the
    # api_key the JSON did send. Refused by its Content-Type, as the JSON routes refuse one.
    key = _signed_in(client)
    client.cookies.clear()
    form = f"api_key={key}".encode()
    for body, kind in [(f'{{"api_key": "{key}"}}'.encode(), {"content-type": "application/json"}),
                       (form, {"content-type": "text/plain"}), (form, {})]:
        resp = client.post("/signin", content=body, headers={"origin": ORIGIN, **kind})
        assert resp.status_code == 415, resp.text[:300]
        assert "Content-Type: send the form as application/x-www-form-urlencoded" in resp.text
        assert "forge_session" not in resp.headers.get("set-cookie", "")


def test_a_form_field_given_twice_is_refused_by_name(client: TestClient) -> None:
    """Review DB: a form kept one value of a repeated field (`name=a&name=b` made a class
    named b), where the JSON API refuses a duplicate key: which value counts is the
    parser's choice, not the sender's. Refused, naming the field; nothing is done."""
    key = _signed_in(client)
    client.cookies.clear()
    resp = client.post("/signin", content=f"api_key={key}&api_key=other".encode(),
                       headers={"origin": ORIGIN,
                                "content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400, resp.text[:300]
    assert "api_key: given more than once" in resp.text
    assert "forge_session" not in resp.headers.get("set-cookie", "")


def test_spawn_names_the_request_id_header_it_refused(client: TestClient) -> None:
    key = _signed_in(client)
    for bad in ("short", "a" * 65, "not/valid!"):
        resp = client.post("/v1/spawn", json={"track": "netplus"},
                           headers={"x-api-key": key, "x-request-id": bad})
        assert resp.status_code == 422, resp.text
        assert resp.json()["details"][0]["field"] == "x-request-id", resp.text
    body = client.post("/v1/spawn", json={"track": "netplus", "request_id": "x"},
                       headers={"x-api-key": key, "x-request-id": "short"})
    assert body.status_code == 422 and body.json()["details"][0]["field"] == "request_id"
    # The header is the idempotency key, and a replay is 200: both in the OpenAPI document
    # (a generated client knew neither, nor that its log correlation id replays a spawn).
    spawn = client.get("/openapi.json").json()["paths"]["/v1/spawn"]["post"]
    header = [p for p in spawn["parameters"] if p["in"] == "header"]
    assert [p["name"] for p in header] == ["X-Request-Id"]
    assert header[0]["schema"]["minLength"] == 8 and "idempotency" in header[0]["description"]
    assert {"200", "201"} <= set(spawn["responses"])


def test_a_terminal_text_frame_nested_too_deep_is_skipped_not_a_close() -> None:
    """``[[[[…`` (5,000 deep, well under the 64 KiB frame cap) made ``json.loads`` raise
    RecursionError, which ``_pump_in`` did not catch: the learner's terminal closed (1000, no
    reason) instead of the frame being skipped as every other malformed frame is."""
    import asyncio

    from forge.services.orchestrator.terminal import _pump_in

    class Session:
        def __init__(self) -> None:
            self.typed: list[bytes] = []
            self.sizes: list[tuple[int, int]] = []

        def type(self, data: bytes) -> None:
            self.typed.append(data)

        def resize(self, rows: int, cols: int) -> None:
            self.sizes.append((rows, cols))

    class Socket:
        def __init__(self, frames: list[dict[str, object]]) -> None:
            self.frames = frames

        async def receive(self) -> dict[str, object]:
            return self.frames.pop(0)

    session = Session()
    frames: list[dict[str, object]] = [
        {"type": "websocket.receive", "text": "[" * 5000},
        {"type": "websocket.receive", "text": '{"type": "resize", "rows": 30, "cols": 90}'},
        {"type": "websocket.receive", "bytes": b"ls\r"},
        {"type": "websocket.disconnect"}]
    asyncio.run(_pump_in(Socket(frames), session))  # type: ignore[arg-type]
    assert session.sizes == [(30, 90)] and session.typed == [b"ls\r"]


def test_a_malformed_scenario_id_is_named_and_a_wellformed_unknown_one_is_not_found(
        client: TestClient) -> None:
    """A malformed scenario id in a path is a 422 naming `scenario_id`, before anything
    is read (it was a 404 "scenario not found" naming nothing), as a malformed cohort or
    assignment id is; a well-formed id that is not the caller's stays a plain 404."""
    key = _signed_in(client)
    for bad in ("scn-XYZ", "scn-0123456789ABCDEF", "scn-0123456789abcdef0", "x" * 300):
        for method, path in (("GET", f"/v1/scenarios/{bad}"),
                             ("DELETE", f"/v1/scenarios/{bad}")):
            resp = client.request(method, path, headers={"x-api-key": key})
            assert resp.status_code == 422, (method, path, resp.text)
            assert resp.json()["details"][0]["field"] == "scenario_id"
    unknown = client.get("/v1/scenarios/scn-0123456789abcdef", headers={"x-api-key": key})
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


def test_head_is_answered_wherever_get_is(client: TestClient) -> None:
    """HEAD was 405 on every route (FastAPI lists GET alone): a monitor's `curl -I
    /healthz` failed. It is GET's status and headers, without the body; a route without
    GET stays 405."""
    for path in ("/healthz", "/plans", "/signin"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == got.headers[
            "content-type"]
        assert head.headers["content-length"] == str(len(got.content))
    assert client.head("/v1/scenarios/scn-0123456789abcdef").status_code == 401  # as GET
    assert client.head("/signout").status_code == 405  # POST only


def test_a_body_sent_to_an_api_route_that_takes_none_is_refused(client: TestClient) -> None:
    """`POST …/submit` with `{"answers": …}` submitted the lab and `POST …/hints/h1` with
    `{"confirm_cost": false}` revealed (and charged) the hint: the body was never read and
    the client never told. Refused by name before the route acts; an empty body (chunked
    or Content-Length 0) and a page's form are not judged."""
    key = {"x-api-key": _signed_in(client)}
    lab = "/v1/scenarios/scn-0123456789abcdef"
    sent = [client.post(f"{lab}/submit", json={"answers": {"a": "b"}}, headers=key),
            client.post(f"{lab}/hints/h1", content=iter([b'{"confirm_cost": false}']),
                        headers=key),
            client.request("DELETE", lab, content=b"x", headers=key),
            client.request("GET", "/v1/tracks", content=b"x", headers=key)]
    for resp in sent:
        assert resp.status_code == 400, (resp.request.url, resp.text)
        assert resp.json() == {"error": "unexpected_body", "message": "body: this route "
                               "takes no body; send the request without one",
                               "details": [{"field": "body", "problem": "not accepted"}]}
    for empty in (client.post(f"{lab}/submit", headers=key),
                  client.post(f"{lab}/hints/h1", content=iter([b""]), headers=key)):
        assert empty.status_code == 404, empty.text  # the route ran: no such lab
    assert client.get(lab, headers=key).status_code == 404


def test_a_query_parameter_an_api_route_does_not_take_is_refused_by_name(
        client: TestClient) -> None:
    """An unknown body field is refused, but an unknown query parameter was dropped without
    a word: `GET /v1/assignments?limit=50` answered a full page of 200 and
    `/v1/cohorts?limt=5` one of 100, so a client never learned its parameter did nothing.
    Every `/v1` route refuses one, naming it and the ones the route takes."""
    key = {"x-api-key": _signed_in(client)}
    for path, name, takes in [
            ("/v1/assignments?limit=50", "limit", "after"),
            ("/v1/cohorts?limt=5", "limt", "after, limit"),
            ("/v1/tracks?_=1", "_", "none"),
            ("/v1/cohorts/coh-0123456789abcdef/dashboard?limit=5&sort=name", "sort",
             "after, limit, status")]:  # parsed by the route itself, declared in its OpenAPI
        resp = client.get(path, headers=key)
        assert resp.status_code == 422, (path, resp.text)
        problem = f"not a parameter of this route (it takes: {takes})"
        assert resp.json() == {"error": "validation_error", "message": f"{name}: {problem}",
                               "details": [{"field": name, "problem": problem}]}, path
    # The parameters a route takes still reach it; pages are not judged.
    assert client.get("/v1/assignments?after=zzz", headers=key).json()[
        "details"][0]["field"] == "after"
    assert client.get("/signin?next=/tracks&utm_source=lms").status_code == 200
    # Nor is the lab's access link, a link a browser follows from an email or an LMS that
    # may append its own: refused, the learner read that the link had expired or been used.
    link = client.get("/v1/access/scn-0123456789abcdef?token=t&utm_source=lms")
    assert link.json()["error"] == "token_malformed", link.text  # the route ran
    # A route without parameters documents that 422 too, as a client generated from the
    # OpenAPI document must expect it.
    spec = client.get("/openapi.json").json()["paths"]
    assert "422" in spec["/v1/tracks"]["get"]["responses"]
    assert "422" not in spec["/healthz"]["get"]["responses"]


def test_a_refused_parameter_is_named_as_the_client_sent_it(client: TestClient) -> None:
    """A query, path or header parameter FastAPI refused was named `query.limit`,
    `query.token`, while a body field, the same parameter refused by a route's own check
    (the dashboard's `limit`) and a repeated one were named bare: one parameter, two names
    for a client matching `details[].field` to what it sent."""
    key = {"x-api-key": _signed_in(client)}
    for path, name in [("/v1/cohorts?limit=0", "limit"), ("/v1/cohorts?limit=abc", "limit"),
                       ("/v1/access/scn-0123456789abcdef", "token"),
                       ("/v1/cohorts/coh-0123456789abcdef/dashboard?limit=0", "limit"),
                       ("/v1/cohorts?limit=1&limit=2", "limit")]:
        resp = client.get(path, headers=key)
        assert resp.status_code == 422, (path, resp.text)
        assert [d["field"] for d in resp.json()["details"]] == [name], (path, resp.text)
        assert name in resp.json()["message"] and "query." not in resp.text, resp.text
    body = client.post("/v1/spawn", json={"track": 5}, headers=key).json()
    assert body["details"] == [{"field": "track", "problem": "Input should be a valid string"}]


def test_a_401_names_how_to_authenticate(client: TestClient) -> None:
    """A learner's 401 (no credentials, an unknown API key) had no `WWW-Authenticate`,
    which RFC 9110 requires of every 401 (the operator's had one): it names Bearer, as
    an API key is also taken as `Authorization: Bearer fgk_…`."""
    for headers in ({}, {"x-api-key": "fgk_unknown"}, {"authorization": "Bearer fgk_x"}):
        resp = client.get("/v1/tracks", headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"] == 'Bearer realm="forge"', headers
