"""The deterministic evidence bundle (evidence.tar.zst) and a defensive reader.

Writing: members are sorted, every tar header is fixed (mtime 0, uid/gid 0, no user
names, mode 0644, ustar format) and the compressor's parameters are fixed (zstd level,
single thread, content size and checksum written; gzip with mtime 0 and no file name), so
the same inputs give the same bytes. `manifest.json` lists sha256 and size of every other
member. Reading accepts zstd and gzip (recognised by magic bytes, not by file name) and
refuses links, devices, absolute or `..` paths, duplicate names and oversized members.
Standard library + zstandard only (the offline verifier uses the reader).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zstandard

from forge_verify.canonical import CanonicalJSONError, dumps_file, loads

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "forge.evidence/v1"
ZSTD_LEVEL = 10
GZIP_LEVEL = 9
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
BUNDLE_NAMES = {"zst": "evidence.tar.zst", "gz": "evidence.tar.gz"}


class BundleError(ValueError):
    """A bundle cannot be built or read safely; the message says which member and why."""


@dataclass(frozen=True)
class ReadLimits:
    """Bounds applied while reading an untrusted bundle."""

    max_member_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 256 * 1024 * 1024
    max_members: int = 4096


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256."""
    return hashlib.sha256(data).hexdigest()


def check_member_name(name: str) -> None:
    """Refuse names that could escape a directory or confuse a reader."""
    parts = name.split("/")
    if (not name or len(name) > 200 or name.startswith("/") or "\\" in name
            or any(p in ("", ".", "..") for p in parts)
            or any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in name)):
        raise BundleError(f"member name {name!r} is not a safe relative path")


def build_manifest(scenario_id: str, members: Mapping[str, bytes]) -> dict[str, Any]:
    """The manifest document for `members` (which must not include the manifest)."""
    return {
        "format": MANIFEST_FORMAT,
        "scenario_id": scenario_id,
        "members": [
            {"name": n, "sha256": sha256_hex(members[n]), "size": len(members[n])}
            for n in sorted(members)
        ],
    }


def _tar_bytes(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            check_member_name(name)
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(members[name]))
    return buf.getvalue()


def compress(tar_data: bytes, fmt: str) -> bytes:
    """Compress tar bytes with the fixed parameters of `fmt` ("zst" or "gz")."""
    if fmt == "zst":
        cctx = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, write_checksum=True, write_content_size=True, threads=0)
        return cctx.compress(tar_data)
    if fmt == "gz":
        out = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0,
                           compresslevel=GZIP_LEVEL) as gz:
            gz.write(tar_data)
        return out.getvalue()
    raise BundleError(f"bundle format {fmt!r} is not one of {sorted(BUNDLE_NAMES)}")


def build_bundle(scenario_id: str, members: Mapping[str, bytes], fmt: str = "zst") -> bytes:
    """Deterministic compressed tar of `members` plus their manifest."""
    if MANIFEST in members:
        raise BundleError(f"{MANIFEST} is written by the bundle builder, not passed in")
    all_members = dict(members)
    all_members[MANIFEST] = dumps_file(build_manifest(scenario_id, members))
    return compress(_tar_bytes(all_members), fmt)


class _Bounded(io.RawIOBase):
    """A reader that fails once more than `limit` bytes came out of the decompressor."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit, self.count = inner, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.inner.read(len(b))
        self.count += len(data)
        if self.count > self.limit:
            raise BundleError("bundle expands beyond the size limit")
        b[: len(data)] = data
        return len(data)


def _decompressed(data: bytes, limit: int) -> io.BufferedReader:
    if data.startswith(ZSTD_MAGIC):
        inner: Any = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    elif data.startswith(GZIP_MAGIC):
        inner = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
    else:
        raise BundleError("bundle is neither zstd (.tar.zst) nor gzip (.tar.gz)")
    return io.BufferedReader(_Bounded(inner, limit))


def read_bundle(data: bytes, limits: ReadLimits | None = None) -> dict[str, bytes]:
    """Every member of a bundle by name, refusing anything unsafe or oversized."""
    lim = limits or ReadLimits()
    stream = _decompressed(data, lim.max_total_bytes + 16 * 1024 * 1024)
    members: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                check_member_name(info.name)
                if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                    raise BundleError(f"member {info.name!r} is not a regular file")
                if info.name in members:
                    raise BundleError(f"member {info.name!r} appears twice")
                if len(members) >= lim.max_members:
                    raise BundleError(f"more than {lim.max_members} members")
                if info.size > lim.max_member_bytes:
                    raise BundleError(f"member {info.name!r} is larger than the limit")
                total += info.size
                if total > lim.max_total_bytes:
                    raise BundleError("members exceed the total size limit")
                fh = tar.extractfile(info)
                members[info.name] = fh.read() if fh is not None else b""
    except BundleError:
        raise
    except (tarfile.TarError, zstandard.ZstdError, zlib.error, OSError, EOFError) as exc:
        raise BundleError(f"bundle is not a readable tar archive ({exc})") from None
    if not members:
        raise BundleError("bundle is empty")
    return members


def parse_manifest(members: Mapping[str, bytes]) -> dict[str, Any]:
    """The manifest document of a read bundle, shape-checked."""
    raw = members.get(MANIFEST)
    if raw is None:
        raise BundleError(f"{MANIFEST} is missing")
    try:
        doc = loads(raw)
    except CanonicalJSONError as exc:
        raise BundleError(f"{MANIFEST}: {exc}") from None
    if (not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT
            or not isinstance(doc.get("scenario_id"), str)
            or not isinstance(doc.get("members"), list)):
        raise BundleError(f"{MANIFEST}: not a {MANIFEST_FORMAT} manifest")
    for i, m in enumerate(doc["members"]):
        if (not isinstance(m, dict) or not isinstance(m.get("name"), str)
                or not isinstance(m.get("sha256"), str) or not isinstance(m.get("size"), int)):
            raise BundleError(f"{MANIFEST}: members[{i}] needs name, sha256 and size")
    return doc
