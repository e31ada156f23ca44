"""`forge keys resign` on a multi-machine install (`FORGE_ARTIFACT_STORE=jetstream`): the
verdicts a revoked key signed in the `forge-artifacts` bucket are signed again with the
current key; one whose score was changed after signing is left as it is and named (exit 1);
score.json and the bundle are never replaced.

Before, the command signed only results under the storage root and said the bucket's were
not reached (exit 1): on such an install every verdict of a leaked key kept failing with
revoked_key. Real nats-server with Forge's bus permissions, real scorer and signing keys."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from forge.bus import NatsServer
from forge.bus.object_buckets import put_object
from forge.bus.permissions import ARTIFACT_BUCKET
from forge.config import load_settings
from forge.services.common.artifact_stores import ObjectStoreArtifactStore
from forge.signing.keystore import SigningKeyring, keyring_dir
from forge_verify import verify_artifacts
from forge_verify.canonical import dumps_file

from .conftest import PYTHON
from .test_retention_jetstream import environ, score_into_bucket, store  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # services on their default SQLite store


def _verifies(files: dict[str, bytes], trusted: list[object]) -> tuple[bool, list[str]]:
    res = verify_artifacts(files["score.json"], files["evidence.tar.zst"], "evidence.tar.zst",
                           files["verdict.sig"], files["verdict.pub"], trusted=trusted)
    return res.ok, [r.code for r in res.reasons]


async def test_resign_reaches_the_verdicts_in_the_bucket(
        nats: NatsServer, store: ObjectStoreArtifactStore,  # noqa: F811 (the fixture)
        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_HMAC_SECRET")}
    env.update(environ(tmp_path, nats))
    settings = load_settings(env)
    ids = await score_into_bucket(settings, store, nats, ["expired", "long"])
    good, tampered = ids["long"], ids["expired"]
    ring = SigningKeyring(keyring_dir(settings.storage_root, {}))
    leaked = ring.current()
    # Its holder changed one stored score after it was signed.
    changed = await asyncio.to_thread(store.read, tampered)
    assert changed is not None
    doc = json.loads(changed["score.json"])
    raised = dumps_file({**doc, "score": 1.0 if doc["score"] != 1.0 else 0.5})
    await put_object(store.connection.jetstream(), ARTIFACT_BUCKET, f"{tampered}/score.json",
                     raised, replicas=1)
    before = await asyncio.to_thread(store.read, good)
    assert before is not None

    def forge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PYTHON), "-m", "forge", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=False)

    revoke = await asyncio.to_thread(forge, "keys", "revoke", leaked.key_id)
    assert revoke.returncode == 0, revoke.stderr
    current = SigningKeyring(keyring_dir(settings.storage_root, {})).current()
    assert current.key_id != leaked.key_id
    assert _verifies(before, [current.public_key]) == (False, ["untrusted_key"])

    run = await asyncio.to_thread(forge, "keys", "resign", leaked.key_id, "--json")
    assert run.returncode == 1, run.stderr  # the tampered one is named, not signed
    report = json.loads(run.stdout)
    assert report["verdicts"] == [good]
    assert [r["scenario_id"] for r in report["refused"]] == [tampered]
    after = await asyncio.to_thread(store.read, good)
    assert after is not None
    assert _verifies(after, [current.public_key]) == (True, [])
    assert {n: after[n] for n in ("score.json", "evidence.tar.zst")} == \
        {n: before[n] for n in ("score.json", "evidence.tar.zst")}
    left = await asyncio.to_thread(store.read, tampered)
    assert left is not None and left["verdict.sig"] == changed["verdict.sig"]
    assert not _verifies(left, [current.public_key])[0]

    again = await asyncio.to_thread(forge, "keys", "resign", leaked.key_id, "--json")
    assert json.loads(again.stdout)["verdicts"] == []  # nothing left to sign but the refused
