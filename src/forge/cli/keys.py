"""`forge keys …`: the Ed25519 keyring that signs verdicts and audit checkpoints."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from forge.cli.output import JSON_OPTION, print_json, print_table
from forge.cli.storage import refuse_unsafe, watch_new_root
from forge.config.storage_root import UnsafeStorage, check_storage_root
from forge.signing.keystore import (
    KEY_DIR_ENV,
    NoSigningKey,
    SigningKeyError,
    SigningKeyring,
    keyring_dir,
)

if TYPE_CHECKING:
    from forge.config.settings import Settings
    from forge.evidence.artifact_store import ArtifactStore
    from forge.evidence.resign import ResignReport

T = TypeVar("T")

app = typer.Typer(help="Ed25519 signing keys for verdicts.", no_args_is_help=True)

STORAGE_OPTION = typer.Option(None, "--storage", envvar="STORAGE_ROOT",
                        help="Storage root (default ./storage).")
KEYS_DIR_OPTION = typer.Option(None, "--keys-dir", envvar=KEY_DIR_ENV,
                    help="Keyring directory (default <storage>/keys/signing).")


def open_keyring(storage: Path | None, keys_dir: Path | None) -> SigningKeyring:
    """The keyring the scoreboard would use for these options/environment; a storage root
    (or keyring folder) another user could have planted exits 2."""
    if keys_dir is not None:
        if keys_dir.exists() and not keys_dir.is_dir():
            typer.echo(f"error: {KEY_DIR_ENV} / --keys-dir {keys_dir} is not a folder: name "
                       "the folder of the verdict signing keys, or unset it to use "
                       "STORAGE_ROOT/keys/signing", err=True)
            raise typer.Exit(2)
        return SigningKeyring(keys_dir)
    root = (storage or Path("storage")).absolute()
    try:
        check_storage_root(root)
    except UnsafeStorage as exc:
        refuse_unsafe(exc)
    return SigningKeyring(keyring_dir(root, {}))


def _watched_root(storage: Path | None, keys_dir: Path | None) -> Path | None:
    """The storage root a key written with these options may create (None with --keys-dir)."""
    return None if keys_dir is not None else (storage or Path("storage")).absolute()


@app.command()
def generate(
    storage: Path | None = STORAGE_OPTION, keys_dir: Path | None = KEYS_DIR_OPTION
) -> None:
    """Create the first signing key (refuses if one is current; use rotate)."""
    ring, root = open_keyring(storage, keys_dir), _watched_root(storage, keys_dir)
    try:
        if root is None:
            key = ring.generate()
        else:
            with watch_new_root(root):
                key = ring.generate()
    except UnsafeStorage as exc:
        refuse_unsafe(exc)
    except SigningKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"generated signing key {key.key_id} in {ring.directory}")


@app.command()
def rotate(
    storage: Path | None = STORAGE_OPTION, keys_dir: Path | None = KEYS_DIR_OPTION
) -> None:
    """A new key signs from now on; old public keys stay for verification."""
    ring, root = open_keyring(storage, keys_dir), _watched_root(storage, keys_dir)
    try:
        if root is None:
            key = ring.rotate()
        else:
            with watch_new_root(root):
                key = ring.rotate()
    except UnsafeStorage as exc:
        refuse_unsafe(exc)
    except SigningKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"current signing key is now {key.key_id}; "
               "previous public keys are kept (forge keys export-public)")


@app.command("list")
def list_keys(
    storage: Path | None = STORAGE_OPTION, keys_dir: Path | None = KEYS_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Key ids, creation and retirement times, which one is current (exit 1 when none)."""
    ring = open_keyring(storage, keys_dir)
    keys = [{"key_id": i.key_id, "created_at": i.created_at, "retired_at": i.retired_at,
             "revoked_at": i.revoked_at, "revoked_reason": i.revoked_reason,
             "state": "current" if i.current else "revoked" if i.revoked_at else (
                 "can sign" if i.can_sign else "verify only")}
            for i in ring.list_keys()]
    if as_json:
        print_json({"keys": keys})
    elif not keys:
        typer.echo(f"no signing keys in {ring.directory} (run `forge keys generate`)")
    else:
        print_table(("KEY_ID", "CREATED", "RETIRED", "STATE"),
                    ([str(k["key_id"]), str(k["created_at"]), str(k["retired_at"] or "-"),
                      str(k["state"])] for k in keys))
    if not keys:
        raise typer.Exit(1)


@app.command("export-public")
def export_public(
    out: Path | None = typer.Option(None, "--out", help="Write <kid>.pem files here."),
    storage: Path | None = STORAGE_OPTION, keys_dir: Path | None = KEYS_DIR_OPTION,
) -> None:
    """Print every public key but the revoked as PEM (or write them to --out).

    For `--trusted-key`. Writing to --out also removes a revoked key's file an earlier
    export left there."""
    ring = open_keyring(storage, keys_dir)
    try:
        pems = ring.export_public(out)
    except SigningKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not pems:
        typer.echo(f"no public keys in {ring.directory}", err=True)
        raise typer.Exit(1)
    if out is None:
        typer.echo(pems.decode("ascii"), nl=False)
    else:
        typer.echo(f"wrote {len(ring.trusted_public_keys())} public keys to {out}")


@app.command()
def revoke(
    key_id: str = typer.Argument(..., help="The key id (forge keys list)."),
    reason: str = typer.Option("", "--reason", help="Kept with the key (one line, ≤200)."),
    storage: Path | None = STORAGE_OPTION, keys_dir: Path | None = KEYS_DIR_OPTION,
) -> None:
    """Revoke a key that leaked: it never signs again and nothing it signed is trusted.

    A new key signs from now on if it was current. Then export the public keys again and
    run `forge keys resign KEY_ID` for the verdicts and credentials stored."""
    ring, root = open_keyring(storage, keys_dir), _watched_root(storage, keys_dir)
    try:
        if root is None:
            newly, replacement = ring.revoke(key_id, reason)
        else:
            with watch_new_root(root):
                newly, replacement = ring.revoke(key_id, reason)
    except UnsafeStorage as exc:
        refuse_unsafe(exc)
    except SigningKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not newly:
        typer.echo(f"key {key_id} was already revoked")
        return
    if replacement is not None:
        typer.echo(f"current signing key is now {replacement.key_id}")
    typer.echo(f"revoked key {key_id}: verdicts and credentials it signed no longer verify. "
               "Next: `forge keys export-public --out <folder>` again for verifiers, and "
               f"`forge keys resign {key_id}` to sign the stored ones with the current key")


@app.command()
def resign(
    key_id: str = typer.Argument(..., help="The revoked key id."),
    storage: Path | None = STORAGE_OPTION, keys_dir: Path | None = KEYS_DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Sign what a revoked key signed again, with the current key.

    Each stored verdict and credential the revoked key KEY_ID signed, once it verifies in
    full against that key (one that does not is listed and left as it is: exit 1). Safe
    to run again."""
    from forge.bus.errors import BusError
    from forge.cli.context import open_db, settings_or_exit
    from forge.evidence.artifact_store import FilesystemArtifactStore
    from forge.evidence.credentials import resign_credentials
    from forge.evidence.resign import resign_verdicts

    ring = open_keyring(storage, keys_dir)
    revoked = ring.public_keys().get(key_id)
    if revoked is None or key_id not in ring.revoked_ids():
        why = "is not in the ring" if revoked is None else "is not revoked"
        typer.echo(f"error: key {key_id[:40]!r} {why}; `forge keys revoke` it first "
                   "(see `forge keys list`)", err=True)
        raise typer.Exit(1)
    try:
        key = ring.current()
    except NoSigningKey as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    environ = dict(os.environ)
    if storage is not None:  # the state DB of that root, as the services would find it
        environ["STORAGE_ROOT"] = str(storage.absolute())
    settings = settings_or_exit(environ)

    def resign_all(store: ArtifactStore) -> tuple[ResignReport, int, list[tuple[str, str]]]:
        report = resign_verdicts(store, key_id, revoked, key)
        return (report, *resign_credentials(open_db(settings), store, key_id, revoked, key))

    try:
        if settings.artifact_store == "jetstream":
            report, creds, creds_refused = asyncio.run(_in_bucket(settings, resign_all))
        else:
            report, creds, creds_refused = resign_all(
                FilesystemArtifactStore(settings.storage_root))
    except (OSError, BusError) as exc:  # the bus or a disk failed: what was done stays done
        typer.echo(f"error: {settings.artifact_store} artifact store: {exc}; the verdicts "
                   "signed again so far stay signed; run this again once it answers",
                   err=True)
        raise typer.Exit(1) from None
    refused = ([{"scenario_id": s, "why": w} for s, w in report.refused]
               + [{"credential_id": c, "why": w} for c, w in creds_refused])
    if as_json:
        print_json({"key_id": key.key_id, "verdicts": report.resigned,
                    "credentials": creds, "refused": refused})
    else:
        typer.echo(f"signed again with {key.key_id}: {len(report.resigned)} verdicts, "
                   f"{creds} credentials")
        for item in refused:
            what = item.get("scenario_id") or item.get("credential_id")
            typer.echo(f"left as it is: {what}: {item['why']}", err=True)
    if refused:
        raise typer.Exit(1)


async def _in_bucket(settings: Settings, work: Callable[[ArtifactStore], T]) -> T:
    """``work`` on the JetStream bucket of a multi-machine install, speaking as the
    scoreboard (the results are its own on the bus); OSError when NATS cannot be reached."""
    from forge.cli.context import scoreboard_bus
    from forge.services.common.artifact_stores import ObjectStoreArtifactStore

    async with scoreboard_bus(settings, "forge-cli-resign") as conn:
        store = ObjectStoreArtifactStore(conn, settings.nats_replicas)
        store.bind(asyncio.get_running_loop())
        return await asyncio.to_thread(work, store)
