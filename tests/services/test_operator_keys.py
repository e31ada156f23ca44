"""spawn_service takes an OPERATOR_TOKEN it does not hold only on the orchestrator's word:
a full-length digest the orchestrator listed and signed with the SAT keyring, never its
16-hex-digit key id, never before the orchestrator answered, never from an answer of
another shape or signed by anyone else (a process squatting the orchestrator's port): fail
closed.

The drill with real services is tests/security/test_retired_operator_token.py; here the
orchestrator's answers are given directly and its URL leads nowhere, so each case says
exactly which answer spawn_service last saw. Last, what answers at that URL (a process on
the orchestrator's port) cannot hold spawn_service with an answer too large or too slow
(review BS)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from forge.config.keyring import HmacKeyring, derive_kid, derive_verifier, list_mac
from forge.config.settings import load_settings
from forge.services.common.http_client import SharedHttpClient
from forge.services.common.peer_keyring import (
    MAX_ANSWER_BYTES,
    PEER_DEADLINE_S,
    VERIFIERS_DOMAIN,
    orchestrator_keyring,
)
from forge.services.spawn.operator_keys import VOUCH_FRESH_S, OperatorKeys

from .conftest import SECRETS, prod_environ

NEW = "a-new-operator-token-made-for-the-rotation-0123456789"
OWN = SECRETS["OPERATOR_TOKEN"]
SAT = HmacKeyring("SAT_HMAC_SECRET", SECRETS["SAT_HMAC_SECRET"].encode())


def _keys(tmp_path: Path) -> OperatorKeys:
    # Port 9 on loopback (discard): nothing listens, so a refresh fails at once and the
    # last answer noted stands.
    settings = load_settings(prod_environ(tmp_path, ORCHESTRATOR_URL="http://127.0.0.1:9"))
    return OperatorKeys(settings, SharedHttpClient(timeout_s=1.0))


def _answer(*tokens: str, verifiers: Any = None, signer: HmacKeyring | None = SAT,
            ) -> dict[str, Any]:
    ring: dict[str, Any] = {"current": derive_kid(tokens[0].encode()),
                            "accepted": sorted(derive_kid(t.encode()) for t in tokens)}
    if verifiers is not None:
        ring["verifiers"] = verifiers
        if signer is not None and isinstance(verifiers, list):
            ring["verifiers_mac"] = list_mac(signer, VERIFIERS_DOMAIN, verifiers)
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


def test_a_list_not_signed_with_the_sat_keyring_vouches_for_nothing(tmp_path: Path) -> None:
    # What a process answering at ORCHESTRATOR_URL without the SAT secret could send.
    listed = [derive_verifier(NEW.encode())]
    squatter = HmacKeyring("SAT_HMAC_SECRET", b"a-secret-the-services-never-had-0123456789")
    for signer in (None, squatter):
        keys = _keys(tmp_path)
        keys.note(_answer(NEW, verifiers=listed, signer=signer))
        assert not _run(keys, NEW), signer
    keys = _keys(tmp_path)
    answer = _answer(NEW, verifiers=listed)
    answer["OPERATOR_TOKEN"]["verifiers"] = [derive_verifier(b"the-squatter-s-own-token")]
    keys.note(answer)  # a signed list, then changed: the HMAC no longer matches
    assert not _run(keys, "the-squatter-s-own-token")


def test_a_digest_whose_key_id_is_not_accepted_vouches_for_nothing(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    keys.note(_answer(OWN, verifiers=[derive_verifier(NEW.encode())]))
    assert not _run(keys, NEW)


def test_sessions_wait_for_the_orchestrator_after_a_restart(tmp_path: Path) -> None:
    # A fresh process that has not heard from the orchestrator: an /ops session opened
    # with a token it vouched for before (its key id) is not taken on trust.
    keys = _keys(tmp_path)
    assert not keys.allows_kid(derive_kid(NEW.encode()))
    assert keys.allows_kid(derive_kid(OWN.encode()))



def _answering(body_chunks: list[bytes], pause_s: float) -> tuple[socket.socket, threading.Thread]:
    """A loopback listener that answers one request with 200 and ``body_chunks``, pausing
    ``pause_s`` before each chunk (what a squatter on the orchestrator's port could send)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"connection: close\r\n\r\n")
            for chunk in body_chunks:
                time.sleep(pause_s)
                try:
                    conn.sendall(chunk)
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return srv, thread


def _ask_at(tmp_path: Path, port: int) -> BaseException | None:
    settings = load_settings(prod_environ(tmp_path,
                                          ORCHESTRATOR_URL=f"http://127.0.0.1:{port}"))

    async def ask() -> None:
        async with httpx.AsyncClient() as client:
            await orchestrator_keyring(settings, client, ["any-credential"])

    try:
        asyncio.run(ask())
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return exc
    return None


def test_an_answer_too_large_or_too_slow_is_not_read_on(tmp_path: Path) -> None:
    # A body past the cap is refused as it arrives, not read whole.
    big = [b"{" + b" " * (MAX_ANSWER_BYTES + 1)]
    srv, thread = _answering(big, 0.0)
    with srv:
        error = _ask_at(tmp_path, srv.getsockname()[1])
    assert isinstance(error, ValueError) and "too large" in str(error)
    thread.join(10)
    # A body dripped a byte at a time, each within the per-read timeout, never completes:
    # the whole answer has its own deadline.
    drip = [b" "] * int(PEER_DEADLINE_S / 0.5 + 4)
    srv, thread = _answering(drip, 0.5)
    with srv:
        error = _ask_at(tmp_path, srv.getsockname()[1])
    assert isinstance(error, ValueError) and "in time" in str(error)
    thread.join(10)


def test_a_token_not_held_here_needs_a_fresh_answer(tmp_path: Path) -> None:
    # The orchestrator retired it, or is out of reach: an answer older than VOUCH_FRESH_S
    # vouches for nothing (asked again, and here nothing answers), while this service's own
    # tokens go by the last answer as before.
    keys = _keys(tmp_path)
    keys.note(_answer(NEW, OWN, verifiers=[derive_verifier(NEW.encode())]))
    assert _run(keys, NEW)
    keys._asked_at = keys._answered_at = time.monotonic() - VOUCH_FRESH_S - 0.5
    assert not _run(keys, NEW)
    assert _run(keys, OWN, own=True)
