"""Attack: anyone, unauthenticated, makes the scoreboard re-read the credential table, gzip
16 KiB and sign again on every GET of the public status list (a cheap amplification).

Now the signed list is cached per process and re-signed only when it must be: a revocation,
a new credential (a list older than a credential cannot vouch for it), a new signing key, or
half its validity passed. The attack must not trade freshness away: a revocation shows in
the very next fetch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from forge.cli import app as forge_cli
from forge.evidence.credentials import CredentialUrls
from forge.evidence.status_cache import REFRESH_AFTER, StatusListCache
from forge.signing.keystore import SigningKey
from forge.store.issued_credentials import list_credentials
from forge_verify.credential import decode_compact

from ..scoreboard.conftest import MakeBoard, make_board  # noqa: F401 (fixture)
from .test_credential_forgery import _codes, _scored


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite_only", marks=pytest.mark.sqlite_only)])
def db_url(tmp_path: Path) -> str:
    """SQLite only: the status list itself runs on both engines in
    test_credential_revocation; here it is about when it is signed."""
    return f"sqlite:///{tmp_path / 'forge.db'}"


async def test_the_status_list_is_signed_once_and_still_shows_a_revocation_next(
        make_board: MakeBoard) -> None:  # noqa: F811
    board = await make_board()
    sid = await _scored(board, tenant="acme", subject="carol")
    async with board.client() as client:
        token = (await client.post(f"/v1/scores/{sid}/credential",
                                   headers=board.operator)).json()["credential"]
        first = (await client.get("/v1/credentials/status/1")).content
        assert _codes(token, board, status_list=first) == []
        [row] = list_credentials(board.state.ctx.db)
        revoked = CliRunner().invoke(forge_cli, ["credential", "revoke", row.credential_id],
                                     env=board.cli_env())
        assert revoked.exit_code == 0, revoked.output
        after = (await client.get("/v1/credentials/status/1")).content
        assert _codes(token, board, status_list=after) == ["revoked"]
        # A credential issued after the cached list gets a list that can vouch for it.
        other = await _scored(board, tenant="acme", subject="dave")
        newer = (await client.post(f"/v1/scores/{other}/credential",
                                   headers=board.operator)).json()["credential"]
        latest = (await client.get("/v1/credentials/status/1")).content
        assert _codes(newer, board, status_list=latest) == []
        assert _codes(token, board, status_list=latest) == ["revoked"]
    # The cache itself, at chosen times: the signature is reused until it must not be.
    db, key = board.state.ctx.db, board.keyring().current()
    urls = CredentialUrls("https://forge.example")
    cache = StatusListCache()
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    signed = cache.token(db, key, urls, now=t0)
    # An hour later nothing changed: the very same signed bytes, dated t0.
    assert cache.token(db, key, urls, now=t0 + timedelta(hours=1)) == signed
    # Half its validity later: signed afresh, so a fetched list is always good for 12 h.
    refreshed = cache.token(db, key, urls, now=t0 + REFRESH_AFTER)
    assert refreshed != signed
    assert decode_compact(refreshed).claims["validFrom"] == "2026-01-02T15:04:05Z"
    # A rotated key signs the next list.
    rotated = SigningKey.from_private_key(Ed25519PrivateKey.generate())
    by_new = cache.token(db, rotated, urls, now=t0 + REFRESH_AFTER)
    assert decode_compact(by_new).header["kid"] == rotated.key_id
    assert decode_compact(by_new).header["kid"] != key.key_id
