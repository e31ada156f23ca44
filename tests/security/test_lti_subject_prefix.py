"""Attack: one LMS's user taking the Forge account of another LMS's user in the same tenant.

A launch's person becomes `<subject_prefix><LMS user id>` in the platform's tenant. Before:
two platforms of one tenant could share a prefix (both default to `lti.`), so user "2" of
platform B signed in as `lti.2`, the account (enrolments, attempts, grades, role) of user
"2" of platform A. After: the LTI file is refused at start, naming the field, when two
platforms of one tenant share a prefix; distinct prefixes or tenants load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from forge.identity.lti_config import LtiConfigError, generate_key, load_lti


def _file(tmp: Path, **platforms: dict[str, Any]) -> Path:
    key = tmp / "tool.pem"
    if not key.exists():
        generate_key(key)
    bodies = {name: {"issuer": f"https://{name}.example.org", "client_id": "c1",
                     "deployment_ids": ["d1"], "auth_login_url": f"https://{name}.example.org/a",
                     "auth_token_url": f"https://{name}.example.org/t",
                     "key_set_url": f"https://{name}.example.org/k", **extra}
              for name, extra in platforms.items()}
    path = tmp / "lti.yaml"
    path.write_text(yaml.safe_dump({"tool": {"base_url": "https://forge.example.org",
                                             "private_key_file": str(key)},
                                    "platforms": bodies}))
    return path


def test_two_platforms_of_a_tenant_with_one_prefix_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LtiConfigError, match=r"platforms\.moodle\.subject_prefix: .*"
                                             r"platforms\.canvas"):
        load_lti(_file(tmp_path, canvas={"tenant": "acme"}, moodle={"tenant": "acme"}))
    with pytest.raises(LtiConfigError, match=r"platforms\.moodle\.subject_prefix"):
        load_lti(_file(tmp_path, canvas={"tenant": "acme", "subject_prefix": "lms."},
                       moodle={"tenant": "acme", "subject_prefix": "lms."}))


def test_distinct_prefixes_or_tenants_load(tmp_path: Path) -> None:
    reg = load_lti(_file(tmp_path, canvas={"tenant": "acme"},
                         moodle={"tenant": "acme", "subject_prefix": "moodle."},
                         other={"tenant": "globex"}))
    assert sorted(reg.platforms) == ["canvas", "moodle", "other"]
