"""Attack: read credentials out of a logged or printed Settings object.

A settings object ends up in logs, tracebacks and debug output. Before, its repr showed
NATS_URL and FORGE_DB_URL verbatim, with any user:password they carry, and a secret read
(`SecretRead`) showed the secret itself. Now neither repr nor any configuration error
carries a credential: URLs that may hold one are left out of the repr, keyrings show only
key ids, and errors name variables, never values.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config import ConfigError, load_settings
from forge.config.secrets import read_secret

CREDENTIALS = ("nats-user-pw-0123456789", "db-user-pw-0123456789", "opa-user-pw-0123456789")
SECRETS = {name: f"{name.lower()}-secret-value-0123456789-abcdef"
           for name in ("SAT_HMAC_SECRET", "ET_HMAC_SECRET", "RECEIPT_HMAC_SECRET",
                        "OPERATOR_TOKEN", "NATS_SPAWN_PASSWORD", "SAT_HMAC_SECRET_NEXT",
                        "OPERATOR_TOKEN_PREVIOUS")}


def environ(tmp_path: Path) -> dict[str, str]:
    return {"FORGE_ENV": "prod", "STORAGE_ROOT": str(tmp_path), **SECRETS,
            "NATS_URL": f"nats://forge:{CREDENTIALS[0]}@bus.internal:4222",
            "FORGE_DB_URL": f"postgresql://forge:{CREDENTIALS[1]}@db.internal/forge",
            "OPA_URL": f"https://forge:{CREDENTIALS[2]}@opa.internal"}


def test_settings_repr_carries_no_credential(tmp_path: Path) -> None:
    settings = load_settings(environ(tmp_path))
    assert settings.nats_url.startswith("nats://forge:")  # the value itself is intact
    shown = repr(settings) + str(settings)
    for value in (*CREDENTIALS, *SECRETS.values()):
        assert value not in shown


def test_secret_read_repr_hides_the_value() -> None:
    read = read_secret({"SAT_HMAC_SECRET": SECRETS["SAT_HMAC_SECRET"]}, "SAT_HMAC_SECRET")
    assert read.value == SECRETS["SAT_HMAC_SECRET"].encode()
    assert SECRETS["SAT_HMAC_SECRET"] not in repr(read)


@pytest.mark.parametrize(("var", "value"), [
    ("NATS_URL", f"http://forge:{CREDENTIALS[0]}@bus.internal:4222"),
    ("OPA_URL", f"ftp://forge:{CREDENTIALS[2]}@opa.internal"),
    ("ORCHESTRATOR_URL", f"forge:{CREDENTIALS[1]}@orch.internal"),
])
def test_a_refused_url_is_named_not_echoed(tmp_path: Path, var: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({**environ(tmp_path), var: value})
    text = str(err.value)
    assert var in text
    for secret in (*CREDENTIALS, *SECRETS.values()):
        assert secret not in text
