"""A secret's `<NAME>_FILE`, the OIDC or LTI file, the LTI tool key: one another local
user owns, or may write.

Before, `OPERATOR_TOKEN_FILE` (or any secret's, a NATS password's) naming a file user
`nobody` had made, say in /tmp before the operator wrote it, was read as the secret: the
platform then took that user's token for the operator's (every `/v1/admin` route), or
signed sessions and receipts with an HMAC key that user knew. Such a file is now refused
as `forge up --env-file` refuses one (naming the file, its owner and mode, never the
value); a root-owned file readable by all, as secret managers mount them, is still read.
The same for the sign-in files: an OIDC file of `nobody`'s named an identity provider of
theirs (any staff role signed in), an LTI file an LMS of theirs, an LTI key theirs to
sign grade passback with; an ENTITLEMENTS_FILE of theirs, any plan for any tenant.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from forge.config.environ_source import Refused, read_secret_rings
from forge.config.secrets import read_secret
from forge.entitlements.grants import EntitlementsFileError, lookup_file_grant
from forge.identity.lti_config import LtiConfigError, generate_key, load_lti
from forge.identity.oidc_config import OidcConfigError, load_oidc

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

    # Root's file, 0600, but in a folder nobody owns (or a link through one): nobody may
    # put a link to any root-owned file they can read (/etc/hostname) in its place.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    kept = theirs / "op-token"
    planted.rename(kept)
    kept.chmod(0o600)
    os.chown(theirs, NOBODY, NOBODY)
    link.unlink()
    link.symlink_to(kept)  # root's link, through their folder
    for named in (kept, link):
        refused = read_secret({"OPERATOR_TOKEN_FILE": str(named)}, "OPERATOR_TOKEN")
        assert refused.value is None, named
        assert refused.problems[0] == (
            f"OPERATOR_TOKEN_FILE: {named} is looked up in the folder {theirs}, which uid "
            f"{NOBODY} owns (mode 755): another user may put another file in its place; "
            "keep it in a folder only uid 0 (or root) may write")
    # The operator's folder, as secret managers mount them (k8s: name -> ..data/name,
    # ..data -> a dated folder) and in a sticky /tmp-like folder anyone may write: read.
    os.chown(theirs, 0, 0)
    dated = theirs / "..2026_12_07"
    dated.mkdir()
    kept.rename(dated / "op-token")
    (theirs / "..data").symlink_to(dated.name)
    kept.symlink_to("..data/op-token")
    sticky = tmp_path / "tmp"
    sticky.mkdir(mode=0o1777)
    sticky.chmod(0o1777)
    (sticky / "op-token").symlink_to(kept)
    read = read_secret({"OPERATOR_TOKEN_FILE": str(sticky / "op-token")}, "OPERATOR_TOKEN")
    assert (read.value, read.problems) == (CHOSEN.encode(), ())


def test_sign_in_files_another_user_owns_are_refused(tmp_path: Path) -> None:
    oidc = tmp_path / "oidc.yaml"
    oidc.write_text("tenants: {}\n")
    os.chown(oidc, NOBODY, NOBODY)
    with pytest.raises(OidcConfigError) as refused:
        load_oidc(oidc, {})
    assert str(refused.value).startswith(f"OIDC file {oidc} is owned by uid {NOBODY}")

    key = tmp_path / "tool.pem"
    generate_key(key)
    lti = tmp_path / "lti.yaml"
    lti.write_text(yaml.safe_dump({"tool": {"base_url": "https://forge.example.org/",
                                            "private_key_file": str(key)}}))
    assert load_lti(lti).key.kid  # both the operator's: loads
    os.chown(key, NOBODY, NOBODY)
    with pytest.raises(LtiConfigError) as refused:
        load_lti(lti)
    assert f"tool.private_key_file: {key} is owned by uid {NOBODY}" in str(refused.value)
    lti.chmod(0o646)
    with pytest.raises(LtiConfigError) as refused:
        load_lti(lti)
    assert str(refused.value).startswith(f"LTI file {lti} is writable by other users")


def test_an_entitlements_file_another_user_may_write_grants_nothing(tmp_path: Path) -> None:
    grants = tmp_path / "grants.json"
    grants.write_text('{"grants": [{"tenant_id": "acme", "plan": "PRO"}]}')
    assert lookup_file_grant(grants, "acme", "alice") == "PRO"
    os.chown(grants, NOBODY, NOBODY)  # rewritten, as they may at any time, with a plan
    with pytest.raises(EntitlementsFileError) as refused:
        lookup_file_grant(grants, "acme", "alice")
    assert str(refused.value).startswith(f"entitlements file {grants} is owned by uid {NOBODY}")
