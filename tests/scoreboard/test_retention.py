"""Retention honours each scenario's own retention_days, holds, dry runs and failures."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forge.audit.log import global_log
from forge.config import Settings
from forge.retention import HoldStore, cleanup
from forge.services.scoreboard.scoring import Scorer
from forge.signing.keystore import SigningKeyring, keyring_dir
from forge.templates.registry import TemplateRegistry

from ..conftest import TEMPLATE_FIXTURES
from ..services.conftest import prod_environ
from .conftest import PYTHON, build_completion, store_of

NOW = datetime.now(UTC)


def _scored(settings: Settings, days_ago: int, retention_days: int) -> str:
    done = build_completion(settings, completed_at=NOW - timedelta(days=days_ago),
                            retention_days=retention_days)
    Scorer(settings, TemplateRegistry.load(TEMPLATE_FIXTURES),
           db=store_of(settings)).score(done.event)
    return done.scenario_id


@pytest.fixture
def scored(prod_env: Settings) -> dict[str, str]:
    SigningKeyring(keyring_dir(prod_env.storage_root, {})).ensure()
    return {
        "expired": _scored(prod_env, days_ago=40, retention_days=30),
        "held": _scored(prod_env, days_ago=40, retention_days=30),
        "long_retention": _scored(prod_env, days_ago=40, retention_days=90),
        "fresh": _scored(prod_env, days_ago=1, retention_days=7),
    }


def _has_results(settings: Settings, sid: str) -> bool:
    return (settings.storage_root / "scenarios" / sid / "results").exists()


def test_cleanup_respects_retention_holds_and_dry_run(prod_env: Settings,
                                                      scored: dict[str, str]) -> None:
    root = prod_env.storage_root
    HoldStore(root).hold(scored["held"], "legal investigation")
    dry = cleanup(root, dry_run=True)
    actions = {i.scenario_id: i.action for i in dry.items}
    assert actions == {scored["expired"]: "would_delete", scored["held"]: "held",
                       scored["long_retention"]: "kept", scored["fresh"]: "kept"}
    assert all(_has_results(prod_env, sid) for sid in scored.values())

    report = cleanup(root)
    assert report.ok and report.count("deleted") == 1
    assert not _has_results(prod_env, scored["expired"])
    assert not (root / "scenarios" / scored["expired"] / "evidence").exists()
    assert (root / "scenarios" / scored["expired"] / "audit.jsonl").exists()  # audit stays
    for key in ("held", "long_retention", "fresh"):
        assert _has_results(prod_env, scored[key])
    audit = global_log(root).read_bytes().decode()
    assert audit.count('"event":"retention.deleted"') == 1 and scored["expired"] in audit

    # Released, the held scenario goes on the next run; its expiry came from its own days.
    assert HoldStore(root).release(scored["held"]) is True
    assert HoldStore(root).release(scored["held"]) is False
    assert cleanup(root).count("deleted") == 1
    assert not _has_results(prod_env, scored["held"])


def test_cleanup_continues_past_a_failing_item(prod_env: Settings,
                                               scored: dict[str, str]) -> None:
    root = prod_env.storage_root
    broken = root / "scenarios" / scored["long_retention"] / "results" / "score.json"
    broken.write_text("{not json")
    stuck = root / "scenarios" / scored["held"]

    def deleter(scenario_dir: Path) -> None:
        if scenario_dir == stuck:
            raise PermissionError(13, "Permission denied")
        from forge.retention.cleanup import delete_results
        delete_results(scenario_dir)

    report = cleanup(root, deleter=deleter)
    actions = {i.scenario_id: (i.action, i.reason) for i in report.items}
    assert actions[scored["long_retention"]] == ("failed", "score.json: not valid JSON")
    assert actions[scored["held"]] == ("failed", "delete failed: Permission denied")
    assert actions[scored["expired"]][0] == "deleted"
    assert not report.ok
    assert '"event":"retention.failed"' in global_log(root).read_bytes().decode()


def test_retention_cli(prod_env: Settings, scored: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, **prod_environ(prod_env.storage_root, FORGE_DB_URL=prod_env.db_url)}

    def forge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PYTHON), "-m", "forge", "retention", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    held = forge("hold", scored["held"], "--reason", "case 7")
    assert held.returncode == 0 and "warning" not in held.stderr  # its results are here
    # A typo'd id is held all the same (its results may come later), but the operator is
    # told that nothing of that id is known: the hold they meant protects nothing yet.
    typo = forge("hold", "scn-0123456789abcdef")
    assert typo.returncode == 0 and typo.stdout.startswith("held: scn-0123456789abcdef")
    assert "warning: no scenario scn-0123456789abcdef is known here" in typo.stderr
    assert forge("release", "scn-0123456789abcdef").returncode == 0
    assert "already held" in forge("hold", scored["held"]).stdout
    assert forge("hold", "../../etc").returncode == 2
    dry = forge("cleanup", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counts = json.loads(dry.stdout)["counts"]
    assert (counts["would_delete"], counts["held"], counts["deleted"]) == (1, 1, 0)
    assert _has_results(prod_env, scored["expired"])
    done = forge("cleanup")
    assert done.returncode == 0 and "1 deleted" in done.stdout
    assert not _has_results(prod_env, scored["expired"])
    assert forge("release", scored["held"]).returncode == 0
    assert forge("release", scored["held"]).returncode == 1
    (prod_env.storage_root / "scenarios" / scored["fresh"] / "results" / "score.json"
     ).write_text("[]")
    failing = forge("cleanup")
    assert failing.returncode == 1 and "failed" in failing.stdout
    assert not _has_results(prod_env, scored["held"])  # released, so deleted past the failure


def test_the_scoreboard_applies_retention_by_itself(prod_env: Settings, scored: dict[str, str],
                                                    nats: object, tmp_path: Path) -> None:
    """The /plans page promises "results kept N days": before, nothing deleted them unless
    the operator ran `forge retention cleanup` by hand (the runbook named no schedule), so
    results and terminal recordings stayed for ever. Now the running scoreboard does it
    every FORGE_RETENTION_INTERVAL_S (here 1 s): the expired result goes, the held and
    unexpired ones stay, the deletion is audited and counted in /metrics."""
    import time

    import httpx

    from forge.bus import NatsServer
    from forge.config import load_settings
    from forge.services.scoreboard.app import build_app as build_scoreboard

    from ..live_server import live_server

    assert isinstance(nats, NatsServer)
    root = prod_env.storage_root
    HoldStore(root).hold(scored["held"], "legal investigation")
    settings = load_settings(prod_environ(root, **nats.client_env(),
                                          FORGE_DB_URL=prod_env.db_url,
                                          FORGE_RETENTION_INTERVAL_S="1"))
    with live_server(build_scoreboard(settings)) as url:
        deadline = time.monotonic() + 60
        while _has_results(prod_env, scored["expired"]):
            assert time.monotonic() < deadline, "the scoreboard never applied retention"
            time.sleep(0.1)
        # The results go first; the run counts and audits them as it ends.
        counted = 'forge_retention_results_total{action="deleted"} 1.0'
        while counted not in httpx.get(f"{url}/metrics", timeout=10).text or (
                '"event":"retention.deleted"' not in global_log(root).read_bytes().decode()):
            assert time.monotonic() < deadline, "the retention run never counted its deletion"
            time.sleep(0.1)
    for key in ("held", "long_retention", "fresh"):
        assert _has_results(prod_env, scored[key])
    audit = global_log(root).read_bytes().decode()
    assert audit.count('"event":"retention.deleted"') == 1 and scored["expired"] in audit


def test_retention_runs_can_be_turned_off(prod_env: Settings) -> None:
    """FORGE_RETENTION_INTERVAL_S=0: the operator runs `forge retention cleanup` instead
    (where several scoreboards share one result store); a bad value names the variable."""
    from forge.config import load_settings
    from forge.config.settings import ConfigError

    root = prod_env.storage_root
    off = load_settings(prod_environ(root, FORGE_RETENTION_INTERVAL_S="0"))
    assert off.retention_interval_s == 0
    assert load_settings(prod_environ(root)).retention_interval_s == 3600
    with pytest.raises(ConfigError) as bad:
        load_settings(prod_environ(root, FORGE_RETENTION_INTERVAL_S="-5"))
    assert "FORGE_RETENTION_INTERVAL_S" in str(bad.value)
