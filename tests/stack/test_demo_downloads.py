"""`forge demo --url` downloads the four result files as a learner does: bounded by what the
verifier reads, and with nothing left behind when a download fails."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forge.stack import journey
from forge.stack.journey import Journey, JourneyError
from forge_verify import INPUT_CAPS

SID = "scn-00000000000000d1"


class _Raw(httpx.SyncByteStream):
    """A body as a socket would deliver it (a bytes or JSON body is read at once)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body


class _Chunks(httpx.SyncByteStream):
    """A body sent in 1 KiB pieces, as a socket delivers it (a bytes body is read at once)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, self.size, 1024):
            yield b"x" * min(1024, self.size - start)


def _scoreboard(sizes: dict[str, int], status: int = 200) -> httpx.Client:
    """A scoreboard stand-in (httpx's mock transport) listing the result files of SID and
    serving each as `sizes` says: the real one is driven by tests/stack/test_demo.py."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/v1/scores/{SID}":
            listing = json.dumps({"artifacts": [*sizes, *EXTRA]}).encode()
            return httpx.Response(200, stream=_Raw(listing))
        name = request.url.path.rsplit("/", 1)[-1]
        if name not in sizes:
            return httpx.Response(404)
        return httpx.Response(status, stream=_Chunks(sizes[name]))
    return httpx.Client(base_url="http://scoreboard.invalid", transport=httpx.MockTransport(handle))


def _journey(tmp_path: Path) -> Journey:
    return Journey(spawn_url="http://spawn.invalid", scoreboard_url="http://scoreboard.invalid",
                   storage_root=tmp_path)


# Names a scoreboard may list that are not result files: none is fetched or written.
EXTRA = ["../../escape", "evidence.tar./../../escape2", "/escape3", 7, {"a": 1}]
SMALL = {"score.json": 10, "evidence.tar.zst": 10, "verdict.sig": 10, "verdict.pub": 10}


def test_the_four_files_are_downloaded_and_nothing_else(tmp_path: Path) -> None:
    with _scoreboard(SMALL) as board:
        files = _journey(tmp_path)._artifacts(board, SID)
    assert {p.name for p in (tmp_path / "demo-verdicts" / SID).iterdir()} == set(SMALL)
    assert files["bundle"].name == "evidence.tar.zst"
    assert not list(tmp_path.parent.glob("escape*")) and not list(tmp_path.glob("escape*"))


@pytest.mark.parametrize("sid", ["..", "", "ABSOLUTE", "scn-00000000000000d1/../..", "scn-1"])
def test_a_scenario_id_that_is_not_one_is_no_path(tmp_path: Path, sid: str) -> None:
    """The id comes from the platform's answer and names a directory that a failed download
    removes: "..", an absolute path or "" would have removed the storage root or more."""
    if sid == "ABSOLUTE":  # inside this test's own directory, should the check ever go
        sid = str(tmp_path)
    (tmp_path / "keep").write_text("x")
    with _scoreboard(SMALL, status=503) as board, \
            pytest.raises(JourneyError, match="not a scenario id"):
        _journey(tmp_path)._artifacts(board, sid)
    assert (tmp_path / "keep").read_text() == "x"


def test_an_oversized_listing_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journey, "LISTING_CAP", 1024)
    with _scoreboard({**SMALL, **{f"f{i:04}": 1 for i in range(200)}}) as board, \
            pytest.raises(JourneyError, match="larger than 1024 bytes"):
        _journey(tmp_path)._artifacts(board, SID)
    assert not (tmp_path / "demo-verdicts").exists()


@pytest.mark.parametrize("name", ["evidence.tar.zst", "verdict.pub"])
def test_a_file_larger_than_the_verifier_reads_is_refused_and_nothing_is_kept(
        tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "bundle" if name.startswith("evidence") else name
    monkeypatch.setitem(INPUT_CAPS, key, 4096)  # the verifier's cap, made small to test
    cap = INPUT_CAPS[key]
    with _scoreboard({**SMALL, name: cap + 1}) as board, \
            pytest.raises(JourneyError, match=f"download {name}: larger than"):
        _journey(tmp_path)._artifacts(board, SID)
    assert not (tmp_path / "demo-verdicts" / SID).exists()


def test_a_failed_download_leaves_no_half_set(tmp_path: Path) -> None:
    with _scoreboard(SMALL, status=503) as board, \
            pytest.raises(JourneyError, match="HTTP 503"):
        _journey(tmp_path)._artifacts(board, SID)
    assert not (tmp_path / "demo-verdicts" / SID).exists()


def test_a_compressed_answer_is_never_inflated(tmp_path: Path) -> None:
    """64 KiB of gzip stand for 64 MiB: the listing and the files are read as sent (the
    demo asks for no encoding), so a hostile platform cannot make it inflate a bomb."""
    bomb = gzip.compress(b" " * (64 << 20))
    assert len(bomb) < 128 * 1024

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=_Raw(bomb))

    def client() -> httpx.Client:
        return httpx.Client(base_url="http://scoreboard.invalid",
                            transport=httpx.MockTransport(handle))

    with client() as board, pytest.raises(JourneyError, match="no artifact list"):
        _journey(tmp_path)._artifacts(board, SID)
    dest = tmp_path / "score.json"
    with client() as board:
        journey._download(board, f"/v1/scores/{SID}/artifacts/score.json", dest,
                          time.monotonic() + 60)
    assert dest.read_bytes() == bomb  # stored as sent: the verifier judges it


def test_a_download_still_going_at_its_deadline_is_refused(tmp_path: Path) -> None:
    with _scoreboard(SMALL) as board, pytest.raises(JourneyError, match="not done in time"):
        journey._download(board, f"/v1/scores/{SID}/artifacts/score.json",
                          tmp_path / "score.json", time.monotonic() - 1)
