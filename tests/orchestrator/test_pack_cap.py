"""The evidence pack cap is checked by the lab node, before the pack is built.

Templates allow 2 x 256 captured streams of up to 1 MiB each, far above the 64 MiB pack the
scoreboard accepts (MAX_PACK_BYTES). Before: the node built and shipped such a pack anyway
(all of it in memory, base64-encoded whole just to see whether it fits inline) and the
scoreboard dead-lettered the completion. After: the node judges the pack's exact size from
the file sizes first and fails grading with a reason naming the limit.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from forge.bus.contracts import MAX_EVENT_BYTES
from forge.bus.evidence_pack import (
    INLINE_PACK_LIMIT,
    MAX_PACK_BYTES,
    EvidencePack,
    decode_pack,
    encode_pack,
    pack_size,
)
from forge.services.orchestrator.evidence_ship import PackTooLarge, build_pack, transport_fields

SID = "scn-" + "b" * 16


def test_pack_size_is_exact_before_encoding() -> None:
    for outputs in ({}, {"a.0.stdout": b""}, {"a.0.stdout": b"x" * 7, "b-c.12.stderr": b"yz"}):
        for audit in (b"", b"l", b"log\n" * 101):
            pack = EvidencePack(SID, audit, outputs)
            sizes = {k: len(v) for k, v in outputs.items()}
            assert pack_size(SID, len(audit), sizes) == len(encode_pack(pack))
    # With terminal recordings, exact too; and a pack without any keeps its old bytes.
    for casts in ({"learner.1.cast": b"{}\n"}, {"learner.1.cast": b"a" * 5, "r1.12.cast": b""}):
        pack = EvidencePack(SID, b"log\n", {"a.0.stdout": b"ok"}, casts)
        sizes = {k: len(v) for k, v in casts.items()}
        assert pack_size(SID, 4, {"a.0.stdout": 2}, sizes) == len(encode_pack(pack))
        assert decode_pack(encode_pack(pack), SID).recordings == casts
    assert b"recordings" not in encode_pack(EvidencePack(SID, b"", {}))


def test_a_pack_above_the_cap_is_refused_by_the_node(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    # 25 checks whose two streams a learner drove to the grader's 1 MiB cap.
    for check in range(25):
        for stream in ("stdout", "stderr"):
            (evidence / f"c{check}.0.{stream}").write_bytes(b"\0" * (1 << 20))
    with pytest.raises(PackTooLarge) as caught:
        build_pack(SID, b"audit\n", evidence)
    assert str(MAX_PACK_BYTES) in str(caught.value) and "50 captured streams" in str(caught.value)
    # 47 full streams fit (48 MiB of output is 64 MiB once base64, plus the JSON around):
    # built, and readable by the scoreboard.
    for check in (22, 23, 24):
        (evidence / f"c{check}.0.stderr").unlink()
    pack = build_pack(SID, b"audit\n", evidence)
    assert len(pack) <= MAX_PACK_BYTES and len(decode_pack(pack, SID).outputs) == 47


def test_only_a_small_pack_rides_inline() -> None:
    small = encode_pack(EvidencePack(SID, b"log\n", {"a.0.stdout": b"ok"}))
    assert transport_fields(1000, SID, small) == {
        "evidence_pack": base64.b64encode(small).decode("ascii")}
    big = b"{" + b" " * INLINE_PACK_LIMIT + b"}"
    assert "evidence_object" in transport_fields(1000, SID, big)
    assert "evidence_object" in transport_fields(MAX_EVENT_BYTES - 100, SID, small)
