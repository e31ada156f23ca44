"""spawn_service takes an OPERATOR_TOKEN it does not hold only on the orchestrator's word:
a full-length digest the orchestrator listed, never its 16-hex-digit key id, never before
the orchestrator answered, never from an answer of another shape (fail closed).

The drill with real services is tests/security/test_retired_operator_token.py; here the
orchestrator's answers are given directly and its URL leads nowhere, so each case says
exactly which answer spawn_service last saw."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from forge.config.keyring import derive_kid, derive_verifier
from forge.config.settings import load_settings
from forge.services.common.http_client import SharedHttpClient
from forge.services.spawn.operator_keys import OperatorKeys

from .conftest import SECRETS, prod_environ

NEW = "a-new-operator-token-made-for-the-rotation-0123456789"
OWN = SECRETS["OPERATOR_TOKEN"]


def _keys(tmp_path: Path) -> OperatorKeys:
    # Port 9 on loopback (discard): nothing listens, so a refresh fails at once and the
    # last answer noted stands.
    settings = load_settings(prod_environ(tmp_path, ORCHESTRATOR_URL="http://127.0.0.1:9"))
    return OperatorKeys(settings, SharedHttpClient(timeout_s=1.0))


def _answer(*tokens: str, verifiers: Any = None) -> dict[str, Any]:
    ring = {"current": derive_kid(tokens[0].encode()),
            "accepted": sorted(derive_kid(t.encode()) for t in tokens)}
    if verifiers is not None:
        ring["verifiers"] = verifiers
    return {"OPERATOR_TOKEN": ring}


def _run(keys: OperatorKeys, token: str, *, own: bool = False) -> bool:
    return asyncio.run(keys.allows(token) if own else keys.vouches(token))


def test_nothing_is_vouched_for_before_the_orchestrator_answered(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    assert not _run(keys, NEW)
    assert _run(keys, OWN, own=True)  # its own ring alone decides, as before


def test_the_orchestrators_tokens_are_taken_and_no_other(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    keys.note(_answer(NEW, verifiers=[derive_verifier(NEW.encode())]))
    assert _run(keys, NEW)
    assert not _run(keys, NEW + "x")
    assert not _run(keys, NEW[:-1])
    assert not _run(keys, derive_verifier(NEW.encode()))  # the digest is not the token
    assert not _run(keys, OWN, own=True)  # retired there: refused here too


def test_an_answer_without_full_digests_vouches_for_nothing(tmp_path: Path) -> None:
    kid = derive_kid(NEW.encode())
    for verifiers in (None, [], [kid], ["Z" * 64], "not-a-list", [derive_verifier(b"other")]):
        keys = _keys(tmp_path)
        keys.note(_answer(NEW, verifiers=verifiers))
        assert not _run(keys, NEW), verifiers
