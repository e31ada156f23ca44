"""`forge up --teardown-labs` across nodes: a node that cannot be torn down does not stop
the others; every failure is reported and the labs destroyed are counted."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from forge.cli.up import teardown_nodes
from forge.config import load_settings
from forge.runtime.local import LocalRuntime
from tests.runtime.helpers import simple_lab

pytestmark = pytest.mark.root


def test_a_failing_node_does_not_stop_the_others(tmp_path: Path) -> None:
    broken_root = tmp_path / "broken"
    broken_root.mkdir()
    (broken_root / "runtime").write_text("not a directory\n")  # its runtime cannot open
    good_root = tmp_path / "good"
    prefix = "v" + secrets.token_hex(2)
    broken = load_settings({"STORAGE_ROOT": str(broken_root),
                            "FORGE_RUNTIME_PREFIX": "v" + secrets.token_hex(2)})
    good = load_settings({"STORAGE_ROOT": str(good_root), "FORGE_RUNTIME_PREFIX": prefix})
    runtime = LocalRuntime(str(good_root / "runtime"), prefix=prefix)
    lab_id = "td-" + secrets.token_hex(3)
    try:
        runtime.create(simple_lab(lab_id))
        result = teardown_nodes([("node a", broken), ("node b", good)])
        assert result.destroyed == 1
        assert len(result.failures) == 1 and result.failures[0].startswith("node a: ")
        assert runtime.list() == []
    finally:
        if os.path.isdir(runtime.names.lab_dir(lab_id)):
            runtime.destroy(lab_id)
        runtime.close()
