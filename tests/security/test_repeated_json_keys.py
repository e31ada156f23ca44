"""Attack: say one thing to whatever sits in front of Forge and another to Forge.

`{"track": "bogus", "track": "ccna"}` started a ccna lab: Python's JSON parser keeps the
last of two values, while a gateway, a WAF or an audit proxy that keeps the first saw a
request for "bogus". Every service now refuses a JSON body that names a key twice, at any
depth, with 400 `invalid_body` naming the key, before a route reads it: nothing reserved,
nothing counted. A well-formed body, a form and a body of another type are untouched.
"""

from __future__ import annotations

import pytest

from forge.entitlements.grants import grant
from forge.services.common.json_keys import repeated_key
from forge.store.models import QuotaSlot, RateCounter, Scenario

from ..spawn.conftest import SpawnEnv, make_spawn, spawn_env  # noqa: F401  (fixtures)
from ..spawn.test_spawn_api import count, key_for


@pytest.mark.parametrize(("body", "key"), [
    (b'{"track": "bogus", "track": "netplus"}', "track"),
    (b'{"track": "netplus", "lab": "netplus", "lab": "basic-netplus"}', "lab"),
    (b'{"track": "netplus", "request_id": {"a": 1, "a": 2}}', "a"),
    (b'[{"track": "netplus"}, {"x": 1, "x": 1}]', "x"),
])
def test_a_repeated_key_is_refused_before_any_route_reads_it(
        spawn_env: SpawnEnv, body: bytes, key: str) -> None:  # noqa: F811
    grant(spawn_env.state.ctx.db, "acme", "PRO")
    headers = {**key_for(spawn_env), "content-type": "application/json"}
    with spawn_env.client() as client:
        for content_type in ("application/json", "application/vnd.api+json", None):
            sent = dict(headers)
            if content_type is None:
                del sent["content-type"]  # a route may still call request.json()
            else:
                sent["content-type"] = content_type
            resp = client.post("/v1/spawn", content=body, headers=sent)
            assert resp.status_code == 400, resp.text
            assert resp.json()["error"] == "invalid_body"
            assert resp.json()["details"] == [{"field": key}]
        assert count(spawn_env, Scenario) == 0 and count(spawn_env, QuotaSlot) == 0
        assert count(spawn_env, RateCounter) == 0
        ok = client.post("/v1/spawn", content=b'{"track": "netplus"}', headers=headers)
        assert ok.status_code == 201, ok.text


def test_only_json_objects_are_judged() -> None:
    assert repeated_key(b'{"a": 1, "b": {"a": 2}}') is None  # one per object is fine
    assert repeated_key(b'{"a": 1, "a": 1}') == "a"
    assert repeated_key(b"subject\nlea\nlea\n") is None  # not JSON: the route says so
    assert repeated_key(b"[" * 100_000) is None  # too deep for the parser: the route says so
