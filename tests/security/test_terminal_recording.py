"""Terminal sessions are recorded into the signed evidence, out of everyone's reach (issue 17,
item 5).

Attacks, before → after:
- A learner types the answer in the browser terminal and later claims someone else did, or
  an operator is asked what the learner actually typed: nothing recorded it. Now every
  terminal session is an asciicast v2 file (input, output, resizes) in the evidence bundle,
  listed in the manifest the verdict signs; a changed byte in a recording fails `forge-verify`.
- The learner, inside the lab, rewrites or deletes the recording of their own session: the
  recordings directory lives on the node under STORAGE_ROOT, never mounted into a lab host
  (the lab shell cannot even see it).
- Another learner fetches someone's recording by guessing its URL: recordings are served only
  to the scenario's owner (tenant + subject), from the scoreboard's signed bundle, by strict
  name; anyone else gets the same 404 as for a lab that does not exist.

- A learner floods the terminal to blow up the evidence: a recording stops at its 2 MiB cap
  with one marker event saying so, and the terminal keeps working.

One real platform (spawn + orchestrator + scoreboard over uvicorn, nats-server, SQLite, the
local lab runtime), one netplus lab, one grading. The replay in Chromium is part of the
browser journey, tests/web/test_browser.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import stat
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from forge.runtime.recording import RECORDING_CAP_BYTES, recordings_dir
from forge_verify import verify_artifacts
from forge_verify.bundle import compress, read_bundle

from ..web.conftest import WebPlatform, running_web_platform

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]
FILES = ("score.json", "evidence.tar.zst", "verdict.sig", "verdict.pub")


@dataclass
class Graded:
    """A graded lab of alice's, what its node held while it ran, and her four files."""

    platform: WebPlatform
    scenario_id: str
    alice: dict[str, str]
    bob: dict[str, str]
    node_files: dict[str, int]  # recording name -> file mode while the lab ran
    seen_in_lab: str
    files: dict[str, bytes]


def _until(ws: ClientConnection, marker: str) -> str:
    """Terminal output up to and including `marker` (the shell's answer to a command)."""
    seen = b""
    deadline = time.monotonic() + 60
    while marker.encode() not in seen:
        data = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        seen += data if isinstance(data, bytes) else data.encode()
    return seen.decode("utf-8", "replace")


def _wait(client: httpx.Client, path: str, headers: dict[str, str], ok: str) -> dict[str, object]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        resp = client.get(path, headers=headers)
        if resp.status_code == 200 and ok in resp.text:
            body: dict[str, object] = resp.json()
            return body
        time.sleep(0.2)
    raise AssertionError(f"{path} never showed {ok}")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graded]:
    with running_web_platform(tmp_path_factory.mktemp("rec")) as platform:
        alice = {"x-api-key": platform.learner_key("acme", "alice")}
        bob = {"x-api-key": platform.learner_key("acme", "bob")}
        with httpx.Client(base_url=platform.url, timeout=60) as client:
            resp = client.post("/v1/spawn", json={"track": "netplus"}, headers=alice)
            assert resp.status_code == 201, resp.text
            sid = str(resp.json()["scenario_id"])
            _wait(client, f"/v1/scenarios/{sid}", alice, '"running"')
            folder = recordings_dir(platform.storage, sid)
            url = platform.url.replace("http://", "ws://") + f"/v1/scenarios/{sid}/terminal"
            with connect(url, additional_headers=alice, open_timeout=30) as ws:
                ws.send(b"echo typed-$((6*7))\n")
                _until(ws, "typed-42")
                # From inside the lab: the node's recordings directory does not exist there.
                ws.send(f"ls -d {folder} {folder.parent} 2>&1; echo probe-$((2+3))\n".encode())
                seen_in_lab = _until(ws, "probe-5")
                ws.send(json.dumps({"type": "resize", "rows": 30, "cols": 100}))
                ws.send("echo ünïcode-$((1+1))\n".encode())
                _until(ws, "ünïcode-2")
                node_files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
                node_files["<dir>"] = stat.S_IMODE(folder.stat().st_mode)
                # The shell outlives its socket (a reconnect reattaches to it and goes on in
                # the same recording); `exit` ends it, so the next terminal is a new session.
                ws.send(b"exit\n")
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        ws.recv(timeout=30)
            # A second session prints more than a recording may hold (2 MiB): the recording
            # ends with its marker, and the terminal goes on working.
            with connect(url, additional_headers=alice, open_timeout=30,
                         max_size=None) as ws:
                ws.send(b"head -c 1800000 /dev/urandom | base64 -w 1000; echo flood-$((4*4))\n")
                _until(ws, "flood-16")
                ws.send(b"echo after-cap-$((3*3))\n")
                _until(ws, "after-cap-9")
            resp = client.post(f"/v1/scenarios/{sid}/submit", headers=alice)
            assert resp.status_code == 202, resp.text
        with httpx.Client(base_url=platform.scoreboard_url, timeout=60) as board:
            _wait(board, f"/v1/scores/{sid}", alice, '"artifacts"')
            files = {n: board.get(f"/v1/scores/{sid}/artifacts/{n}", headers=alice).content
                     for n in FILES}
        yield Graded(platform, sid, alice, bob, node_files, seen_in_lab, files)


def _verify(files: dict[str, bytes]) -> tuple[bool, list[str]]:
    res = verify_artifacts(files["score.json"], files["evidence.tar.zst"], "evidence.tar.zst",
                           files["verdict.sig"], files["verdict.pub"])
    return res.ok, [f"{r.code}: {r.message}" for r in res.reasons]


def test_what_was_typed_is_in_the_signed_bundle_and_a_changed_byte_fails(graded: Graded
                                                                         ) -> None:
    """Before: no recording. After: the bundle's manifest lists recordings/learner.1.cast
    with input, output and the resize; the verdict verifies; one flipped byte in the
    recording (bundle repacked with its old manifest) fails, naming the recording."""
    assert graded.node_files == {"learner.1.cast": 0o600, "<dir>": 0o700}
    members = read_bundle(graded.files["evidence.tar.zst"])
    cast = members["recordings/learner.1.cast"]
    manifest = json.loads(members["manifest.json"])
    assert "recordings/learner.1.cast" in {m["name"] for m in manifest["members"]}
    header, *events = [json.loads(line) for line in cast.decode().splitlines()]
    assert header["version"] == 2 and header["title"] == "lab host learner"
    typed = "".join(e[2] for e in events if e[1] == "i")
    shown = "".join(e[2] for e in events if e[1] == "o")
    assert "echo typed-$((6*7))" in typed and "typed-42" in shown
    assert "ünïcode-2" in shown and ["r", "100x30"] in [e[1:] for e in events]
    assert _verify(graded.files) == (True, [])

    flipped = bytearray(cast)
    flipped[cast.index(b"typed-42")] ^= 0x01  # "typed-42" becomes "uyped-42"
    members["recordings/learner.1.cast"] = bytes(flipped)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    forged = {**graded.files, "evidence.tar.zst": compress(buf.getvalue(), "zst")}
    ok, reasons = _verify(forged)
    assert not ok
    assert any(r.startswith("member_digest_mismatch") and "recordings/learner.1.cast" in r
               for r in reasons), reasons


def test_a_session_past_the_cap_ends_with_a_marker_and_still_verifies(graded: Graded) -> None:
    """The second session printed about 2.4 MB: its recording stops at the 2 MiB cap with one
    "m" marker saying so (the terminal answered after that), and the verdict still verifies."""
    cast = read_bundle(graded.files["evidence.tar.zst"])["recordings/learner.2.cast"]
    assert len(cast) <= RECORDING_CAP_BYTES
    events = [json.loads(line) for line in cast.decode().splitlines()[1:]]
    assert [e[1] for e in events].count("m") == 1 and events[-1][1] == "m"
    assert "truncated" in events[-1][2]
    assert "after-cap-9" not in "".join(e[2] for e in events)
    assert _verify(graded.files) == (True, [])


def test_the_learner_inside_the_lab_cannot_reach_the_recordings(graded: Graded) -> None:
    """Before: nothing to protect. After: the lab shell cannot see the node's recordings
    directory nor its scenario directory (not mounted in the lab), and lab end removed the
    node's copy: the signed bundle is the only one left."""
    assert graded.seen_in_lab.count("No such file or directory") == 2, graded.seen_in_lab
    assert not recordings_dir(graded.platform.storage, graded.scenario_id).exists()


def test_only_the_owner_can_fetch_a_recording(graded: Graded) -> None:
    """Before: no recording. After: alice gets her recording (spawn page route and scoreboard
    API); bob of the same tenant, an unknown name and a path trick get a 404."""
    sid, name = graded.scenario_id, "learner.1.cast"
    cast = read_bundle(graded.files["evidence.tar.zst"])[f"recordings/{name}"]
    with httpx.Client(base_url=graded.platform.url, timeout=30) as web, \
            httpx.Client(base_url=graded.platform.scoreboard_url, timeout=30) as board:
        mine = web.get(f"/lab/{sid}/recordings/{name}", headers=graded.alice)
        assert mine.status_code == 200 and mine.content == cast
        assert mine.headers["content-type"].startswith("application/x-asciicast")
        listed = board.get(f"/v1/scores/{sid}/recordings", headers=graded.alice).json()
        assert listed["recordings"][0] == {"name": name, "size": len(cast)}
        assert [r["name"] for r in listed["recordings"]] == [name, "learner.2.cast"]
        for client, path in ((web, f"/lab/{sid}/recordings/{name}"),
                             (board, f"/v1/scores/{sid}/recordings/{name}"),
                             (board, f"/v1/scores/{sid}/recordings")):
            theirs = client.get(path, headers=graded.bob)
            assert theirs.status_code == 404, (path, theirs.text)
            assert cast not in theirs.content
        for bad in ("learner.3.cast", "..%2Fscore.json", "learner.1.cast.json"):
            assert web.get(f"/lab/{sid}/recordings/{bad}",
                           headers=graded.alice).status_code == 404
