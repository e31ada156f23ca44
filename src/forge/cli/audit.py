"""`forge audit verify`: check the global (or one scenario's) audit chain and signed head."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from forge.audit.log import global_log, scenario_log
from forge.cli.keys import KEYS_DIR_OPTION, STORAGE_OPTION, open_keyring
from forge.evidence.artifacts import results_dir
from forge.services.scoreboard.sealing import FINALIZED, finalized_verdicts, is_unsealed
from forge_verify.bundle import sha256_hex
from forge_verify.score import SCENARIO_ID_RE, ScoreInputError

MAX_SCORE_BYTES = 16 * 1024 * 1024

app = typer.Typer(help="Hash-chained audit logs.", no_args_is_help=True)


@app.command("verify")
def verify(
    scenario: str | None = typer.Option(None, "--scenario", help="Scenario id (scn-…)."),
    storage: Path | None = STORAGE_OPTION,
    keys_dir: Path | None = KEYS_DIR_OPTION,
) -> None:
    """Verify links, hashes and checkpoint signatures; exit 1 with every reason if broken."""
    root = (storage or Path("storage")).absolute()
    try:
        log = scenario_log(root, scenario) if scenario is not None else global_log(root)
    except ScoreInputError as exc:
        typer.echo(f"error: --scenario: {exc}", err=True)
        raise typer.Exit(2) from None
    if scenario is not None and not log.path.exists() and not log.head_path.exists():
        # Every scenario's log is written at its spawn and kept (retention too): none at
        # all is a mistyped id or a removed log, never "OK, 0 entries".
        typer.echo(f"error: --scenario: no audit log for {scenario} at {log.path} (not a "
                   "scenario of this storage root, or its log was removed)", err=True)
        raise typer.Exit(2)
    if scenario is None and not log.path.exists() and not log.head_path.exists():
        # Likewise the global log: none at all is another directory than the installation's
        # storage root (the default is ./storage) or a removed log, never "OK, 0 entries".
        typer.echo(f"error: no audit log at {log.path} (not this installation's storage "
                   "root: give --storage or STORAGE_ROOT; or nothing was audited there yet, "
                   "or its log was removed)", err=True)
        raise typer.Exit(2)
    keys = open_keyring(storage, keys_dir).public_keys()
    report = log.verify(keys)
    if scenario is not None:
        report.reasons.extend(_behind_its_verdict(root, scenario, log.read_bytes()))
    else:
        report.reasons.extend(_verdicts_missing(root, log.read_bytes()))
    typer.echo(f"{'OK' if report.ok else 'BROKEN'} {log.path}: {report.entries} entries, "
               f"{report.checkpoints} checkpoints, head {report.head[:16]}")
    for reason in report.reasons:
        typer.echo(f"  FAIL {reason}")
    for note in report.notes:
        typer.echo(f"  note {note}")
    raise typer.Exit(0 if report.ok else 1)


def _stored_score(root: Path, scenario_id: str) -> bytes | None:
    """The scenario's stored score.json (None: no results here, or unreadable)."""
    try:
        with open(results_dir(root, scenario_id) / "score.json", "rb") as fh:
            return fh.read(MAX_SCORE_BYTES)
    except OSError:
        return None


def _audited_here(root: Path, scenario_id: str, score_sha256: str) -> bool:
    """Whether the scenario's own log on this root holds the `score.finalized` entry of this
    verdict, which is written before its global entry. A verdict without one was not
    audited here: its scoreboard stopped between writing the results and auditing them
    (the completion's next delivery audits it), or another replica audited it."""
    for line in scenario_log(root, scenario_id).read_bytes().splitlines():
        if FINALIZED.encode() not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):  # JSON, but no entry (a damaged or altered log)
            continue
        data = entry.get("data")
        if entry.get("event") == FINALIZED and isinstance(data, dict) \
                and data.get("score_sha256") == score_sha256:
            return True
    return False


def _verdicts_missing(root: Path, chain: bytes) -> list[str]:
    """The global log must hold the `score.finalized` entry of every verdict audited on
    this root (its scenario's log there holds the entry; but those the scoreboard is still
    sealing, and those sealed since ``chain`` was read): one rolled back to an older copy
    (with its head file) still chains and verifies, but lacks the later verdicts."""
    try:
        ids = sorted(n for n in os.listdir(root / "scenarios") if SCENARIO_ID_RE.fullmatch(n))
    except OSError:
        return []
    entries = finalized_verdicts(chain)
    missing: list[tuple[str, str]] = []
    for sid in ids:
        score = _stored_score(root, sid)
        if score is None:
            continue
        sha = sha256_hex(score)
        if (sid, sha) not in entries and not is_unsealed(root, sid) \
                and _audited_here(root, sid, sha):
            missing.append((sid, sha))
    if missing:  # sealed since `chain` was read (its global entry precedes its unmarking)?
        now = finalized_verdicts(global_log(root).read_bytes())
        missing = [m for m in missing if m not in now]
    if not missing:
        return []
    return [f"lacks the score.finalized entry of {len(missing)} verdict(s) stored here "
            f"({', '.join(sid for sid, _ in missing[:5])}"
            f"{', …' if len(missing) > 5 else ''}): the log was cut "
            "or rolled back to an older copy"]


def _behind_its_verdict(root: Path, scenario_id: str, chain: bytes) -> list[str]:
    """A scenario's log must reach the entry its stored verdict sealed (score.json's
    `audit.entries` and `audit.head`): one rolled back to before it still chains."""
    score = _stored_score(root, scenario_id)
    if score is None:
        return []
    try:
        sealed = json.loads(score)["audit"]
        entries, head = int(sealed["entries"]), str(sealed["head"])
    except (ValueError, TypeError, KeyError):
        return []
    lines = chain.splitlines()
    if entries > len(lines):
        return [f"has {len(lines)} entries where its verdict (score.json) sealed {entries}: "
                "the log was cut or rolled back to an older copy"]
    try:
        at = json.loads(lines[entries - 1])["hash"] if entries > 0 else None
    except (ValueError, TypeError, KeyError):
        at = None
    if entries > 0 and at != head:
        return [f"entry {entries - 1} is not the head its verdict (score.json) sealed: the "
                "log was replaced"]
    return []
