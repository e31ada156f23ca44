"""The evidence bundle: deterministic bytes, a complete manifest, and a reader that refuses
hostile archives."""

from __future__ import annotations

import io
import tarfile

import pytest
import zstandard

from forge_verify.bundle import (
    MANIFEST,
    BundleError,
    ReadLimits,
    build_bundle,
    parse_manifest,
    read_bundle,
    sha256_hex,
)
from forge_verify.canonical import loads

MEMBERS = {"checks/a/0/stdout.txt": b"hello\n", "template.yaml": b"kind: x\n",
           "audit/scenario.jsonl": b""}


def test_same_inputs_give_the_same_bytes_in_both_formats() -> None:
    for fmt in ("zst", "gz"):
        first = build_bundle("scn-0000000000000001", MEMBERS, fmt)
        again = build_bundle("scn-0000000000000001", dict(reversed(list(MEMBERS.items()))), fmt)
        assert first == again
    assert build_bundle("scn-0000000000000001", MEMBERS, "zst")[:4] == b"\x28\xb5\x2f\xfd"
    assert build_bundle("scn-0000000000000001", MEMBERS, "gz")[:2] == b"\x1f\x8b"


def test_tar_headers_are_fixed_and_members_sorted() -> None:
    data = zstandard.ZstdDecompressor().decompress(build_bundle("scn-0000000000000001", MEMBERS))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted([*MEMBERS, MANIFEST])
    for i in infos:
        assert (i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode) == (0, 0, 0, "", "", 0o644)
        assert i.isreg()


def test_manifest_lists_sha256_and_size_of_every_other_member() -> None:
    for fmt in ("zst", "gz"):
        members = read_bundle(build_bundle("scn-0000000000000001", MEMBERS, fmt))
        manifest = parse_manifest(members)
        assert manifest["scenario_id"] == "scn-0000000000000001"
        assert {m["name"]: (m["sha256"], m["size"]) for m in manifest["members"]} == {
            n: (sha256_hex(d), len(d)) for n, d in MEMBERS.items()}
        assert loads(members[MANIFEST]) == manifest


def _tar_zst(add: object) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar)  # type: ignore[operator]
    return zstandard.ZstdCompressor().compress(buf.getvalue())


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(tar: tarfile.TarFile, kind: bytes) -> None:
    info = tarfile.TarInfo("evil")
    info.type = kind
    info.linkname = "/etc/passwd"
    tar.addfile(info)


@pytest.mark.parametrize(
    ("add", "message"),
    [
        (lambda t: _file(t, "../escape"), "safe relative path"),
        (lambda t: _file(t, "/etc/cron.d/x"), "safe relative path"),
        (lambda t: _file(t, "a/./b"), "safe relative path"),
        (lambda t: _link(t, tarfile.SYMTYPE), "not a regular file"),
        (lambda t: _link(t, tarfile.LNKTYPE), "not a regular file"),
        (lambda t: (_file(t, "dup"), _file(t, "dup")), "appears twice"),
        (lambda t: _file(t, "big", b"x" * 2048), "larger than the limit"),
    ],
)
def test_reader_refuses_unsafe_members(add: object, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        read_bundle(_tar_zst(add), ReadLimits(max_member_bytes=1024))


def test_reader_refuses_decompression_bombs_and_garbage() -> None:
    bomb = _tar_zst(lambda t: [_file(t, f"m{i}", b"\0" * 4000) for i in range(8)])
    with pytest.raises(BundleError, match="limit"):
        read_bundle(bomb, ReadLimits(max_member_bytes=10_000, max_total_bytes=10_000))
    with pytest.raises(BundleError, match="neither zstd"):
        read_bundle(b"PK\x03\x04 not a tar")
    with pytest.raises(BundleError, match="not a readable tar"):
        read_bundle(zstandard.ZstdCompressor().compress(b"\x01" * 1024))


def test_builder_refuses_unsafe_names_and_a_caller_manifest() -> None:
    with pytest.raises(BundleError, match="safe relative path"):
        build_bundle("scn-0000000000000001", {"../x": b""})
    with pytest.raises(BundleError, match="written by the bundle builder"):
        build_bundle("scn-0000000000000001", {MANIFEST: b"{}"})
