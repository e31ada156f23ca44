"""Attack: sign or check something with settings loaded without their secrets.

`load_settings(secrets=False)` (the image and lab commands) leaves every HMAC ring empty.
Before, minting a token with such settings ended in PyJWT's `InvalidKeyError` traceback,
a token check in an unknown-key refusal, and an HMAC made straight from a ring's secret
(a form's CSRF token, a peer's proof, a list's MAC) was keyed by the empty string: one
anybody can make. Now every path that reads a secret of such a ring raises
`SecretsNotRead` naming the variable; its repr and log redaction still work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from forge.config import load_settings
from forge.config.keyring import SecretsNotRead, list_mac, list_mac_valid
from forge.services.common.peer_proof import mint_proof
from forge.services.spawn.web.security import csrf_token
from forge.tokens import LTI_PENDING, mint_token, verify_token


def test_settings_without_secrets_never_sign_or_verify(tmp_path: Path) -> None:
    settings = load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "s")},
                             secrets=False)
    claims = {"platform": "p", "state": "s", "nonce": "n", "browser_sha256": "b"}
    real = load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "t")}).sat
    signed = mint_token(real, LTI_PENDING, claims)
    long = mint_token(real, LTI_PENDING, {**claims, "nonce": "n" * 3000})  # not cached
    attempts: list[Callable[[], object]] = [
        lambda: mint_token(settings.sat, LTI_PENDING, claims),
        lambda: verify_token(settings.sat, LTI_PENDING, signed),
        lambda: verify_token(settings.sat, LTI_PENDING, long),
        lambda: csrf_token(settings, "a-session"),
        lambda: mint_proof(settings.sat, "purpose"),
        lambda: list_mac(settings.receipt, b"d", ["a"]),
        lambda: list_mac_valid(settings.receipt, b"d", ["a"], {"kid": "k", "mac": "m"}),
        lambda: settings.operator.matches(""),
    ]
    for attempt in attempts:
        with pytest.raises(SecretsNotRead, match="was not read: these settings were loaded "
                           "without secrets"):
            attempt()
    assert settings.secret_values() == ()
    assert "SAT_HMAC_SECRET" in repr(settings.sat)
    assert not (tmp_path / "s").exists()  # nothing was read or generated
