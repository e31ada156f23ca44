"""ENTITLEMENTS_FILE is parsed once while it stays the same file, and any rewrite, even of the
same size within one tick of the file system's clock, is seen by the next lookup."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from forge.entitlements import grants


def write(path: Path, tenant: str) -> None:
    path.write_text(json.dumps({"grants": [{"tenant_id": tenant, "plan": "PRO"}]}))


def test_a_settled_file_is_parsed_once_and_a_rewrite_is_seen_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "grants.json"
    write(path, "acme")
    settled = time.time_ns() - 60 * 10**9
    os.utime(path, ns=(settled, settled))
    parsed: list[Path] = []
    real = grants._parse_file_grants

    def counting(p: Path, fd: int) -> list[dict[str, object]]:
        parsed.append(p)
        return real(p, fd)

    monkeypatch.setattr(grants, "_parse_file_grants", counting)
    assert [grants.lookup_file_grant(path, "acme", "alice") for _ in range(3)] == ["PRO"] * 3
    assert len(parsed) == 1
    write(path, "acmf")  # the same size: acme's grant revoked
    assert grants.lookup_file_grant(path, "acme", "alice") is None
    write(path, "acme")  # and back, within the same tick: same size, likely the same mtime
    assert grants.lookup_file_grant(path, "acme", "alice") == "PRO"
    write(path, "acmf")
    assert grants.lookup_file_grant(path, "acme", "alice") is None
    assert len(parsed) == 4


def test_a_file_that_went_away_is_missing_not_remembered(tmp_path: Path) -> None:
    path = tmp_path / "grants.json"
    write(path, "acme")
    settled = time.time_ns() - 60 * 10**9
    os.utime(path, ns=(settled, settled))
    assert grants.lookup_file_grant(path, "acme", "alice") == "PRO"
    path.unlink()
    with pytest.raises(grants.EntitlementsFileError, match="is missing"):
        grants.lookup_file_grant(path, "acme", "alice")
