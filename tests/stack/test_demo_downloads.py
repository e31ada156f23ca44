"""`forge demo --url` downloads the four result files as a learner does: bounded by what the
verifier reads, and with nothing left behind when a download fails."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from forge.stack.journey import Journey, JourneyError
from forge_verify import INPUT_CAPS

SID = "s-demo"


def _scoreboard(sizes: dict[str, int], status: int = 200) -> httpx.Client:
    """A scoreboard stand-in (httpx's mock transport) listing the result files of SID and
    serving each as `sizes` says: the real one is driven by tests/stack/test_demo.py."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/v1/scores/{SID}":
            return httpx.Response(200, json={"artifacts": [*sizes, "../../escape"]})
        name = request.url.path.rsplit("/", 1)[-1]
        if name not in sizes:
            return httpx.Response(404)
        return httpx.Response(status, content=b"x" * sizes[name])
    return httpx.Client(base_url="http://scoreboard.invalid", transport=httpx.MockTransport(handle))


def _journey(tmp_path: Path) -> Journey:
    return Journey(spawn_url="http://spawn.invalid", scoreboard_url="http://scoreboard.invalid",
                   storage_root=tmp_path)


SMALL = {"score.json": 10, "evidence.tar.zst": 10, "verdict.sig": 10, "verdict.pub": 10}


def test_the_four_files_are_downloaded_and_nothing_else(tmp_path: Path) -> None:
    with _scoreboard(SMALL) as board:
        files = _journey(tmp_path)._artifacts(board, SID)
    assert {p.name for p in (tmp_path / "demo-verdicts" / SID).iterdir()} == set(SMALL)
    assert files["bundle"].name == "evidence.tar.zst"
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("name", ["evidence.tar.zst", "verdict.pub"])
def test_a_file_larger_than_the_verifier_reads_is_refused_and_nothing_is_kept(
        tmp_path: Path, name: str) -> None:
    cap = INPUT_CAPS["bundle" if name.startswith("evidence") else name]
    with _scoreboard({**SMALL, name: cap + 1}) as board, \
            pytest.raises(JourneyError, match=f"download {name}: larger than"):
        _journey(tmp_path)._artifacts(board, SID)
    assert not (tmp_path / "demo-verdicts" / SID).exists()


def test_a_failed_download_leaves_no_half_set(tmp_path: Path) -> None:
    with _scoreboard(SMALL, status=503) as board, \
            pytest.raises(JourneyError, match="HTTP 503"):
        _journey(tmp_path)._artifacts(board, SID)
    assert not (tmp_path / "demo-verdicts" / SID).exists()
