"""A secret's `<NAME>_FILE` that another local user owns, or may write.

Before, `OPERATOR_TOKEN_FILE` (or any secret's, a NATS password's) naming a file user
`nobody` had made, say in /tmp before the operator wrote it, was read as the secret: the
platform then took that user's token for the operator's (every `/v1/admin` route), or
signed sessions and receipts with an HMAC key that user knew. Such a file is now refused
as `forge up --env-file` refuses one (naming the file, its owner and mode, never the
value); a root-owned file readable by all, as secret managers mount them, is still read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge.config.environ_source import Refused, read_secret_rings
from forge.config.secrets import read_secret

pytestmark = pytest.mark.root

NOBODY = 65534
CHOSEN = "operator-token-chosen-by-nobody-0123456789abcdef"


def _prod(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"FORGE_ENV": "prod", "STORAGE_ROOT": str(tmp_path / "storage"),
            "SAT_HMAC_SECRET": "s" * 40, "ET_HMAC_SECRET": "e" * 40,
            "RECEIPT_HMAC_SECRET": "r" * 40, **extra}


def test_a_secret_file_another_user_could_write_is_not_the_secret(tmp_path: Path) -> None:
    planted = tmp_path / "op-token"
    planted.write_text(CHOSEN + "\n")
    os.chown(planted, NOBODY, NOBODY)
    planted.chmod(0o600)
    ring = read_secret_rings(_prod(tmp_path, OPERATOR_TOKEN_FILE=str(planted)))["operator"]
    assert isinstance(ring, Refused), ring
    problem, = ring.problems
    assert problem.startswith(f"OPERATOR_TOKEN_FILE: {planted} is owned by uid {NOBODY} "
                              "(mode 600), not by uid 0: that user could have chosen")
    assert CHOSEN not in problem

    os.chown(planted, 0, 0)  # the operator's own, but any user may write it
    planted.chmod(0o666)
    refused = read_secret({"OPERATOR_TOKEN_FILE": str(planted)}, "OPERATOR_TOKEN")
    assert refused.value is None
    assert refused.problems[0].startswith(f"OPERATOR_TOKEN_FILE: {planted} is writable by "
                                          "other users (owner uid 0, mode 666)")

    # Root's, readable by all (a secret manager's mount, reached through a link): read.
    planted.chmod(0o644)
    link = tmp_path / "mounted"
    link.symlink_to(planted)
    read = read_secret({"OPERATOR_TOKEN_FILE": str(link)}, "OPERATOR_TOKEN")
    assert (read.value, read.problems) == (CHOSEN.encode(), ())
