"""The policy bundle on disk: which files it holds and its hash.

Hash = sha256 over the bundle's files sorted by relative POSIX path, each framed as
`path NUL size NUL bytes` so no two different bundles can hash alike. Every `*.rego` file
(tests included) is part of the bundle. `forge policy hash` prints it; the orchestrator logs
it at start and refuses to start when `OPA_POLICY_HASH` is set and differs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from forge.content import POLICIES, content_path
from forge.policy.decision import PolicyError, PolicyHashMismatch

TEST_SUFFIX = "_test.rego"


def default_policy_dir() -> Path:
    """`FORGE_POLICY_DIR`, else the policies shipped in the package."""
    env = os.environ.get("FORGE_POLICY_DIR")
    return Path(env) if env else content_path(POLICIES)


@dataclass(frozen=True)
class PolicyFile:
    """One Rego module: its path relative to the bundle root and its bytes."""

    relpath: str
    data: bytes

    @property
    def is_test(self) -> bool:
        """Rego unit tests (`*_test.rego`) are hashed but never loaded for decisions."""
        return self.relpath.endswith(TEST_SUFFIX)


@dataclass(frozen=True)
class PolicyBundle:
    """The policy files of one directory, read once, and their hash."""

    root: Path
    files: tuple[PolicyFile, ...]
    hash: str

    @classmethod
    def load(cls, root: Path | None = None) -> PolicyBundle:
        """Read every `*.rego` under `root` (recursively, symlinks refused)."""
        base = root if root is not None else default_policy_dir()
        if not base.is_dir():
            raise PolicyError(f"policy directory not found: {base}")
        files: list[PolicyFile] = []
        for path in sorted(base.rglob("*.rego")):
            if path.is_symlink():
                raise PolicyError(f"policy file is a symlink (refused): {path}")
            if path.is_file():
                files.append(PolicyFile(path.relative_to(base).as_posix(), path.read_bytes()))
        files.sort(key=lambda f: f.relpath.encode())
        if not any(not f.is_test for f in files):
            raise PolicyError(f"no policy modules (*.rego) in {base}")
        return cls(base, tuple(files), hash_files(files))

    @property
    def modules(self) -> tuple[PolicyFile, ...]:
        """Decision modules (tests excluded)."""
        return tuple(f for f in self.files if not f.is_test)

    @property
    def tests(self) -> tuple[PolicyFile, ...]:
        """Rego unit-test modules."""
        return tuple(f for f in self.files if f.is_test)


@functools.cache
def shipped_modules_hash() -> str:
    """Hash of the decision modules shipped in the package (whatever FORGE_POLICY_DIR says)."""
    return hash_files(PolicyBundle.load(content_path(POLICIES)).modules)


def hash_files(files: list[PolicyFile] | tuple[PolicyFile, ...]) -> str:
    """sha256 over files sorted by path, each framed as `path NUL size NUL bytes`."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.relpath.encode()):
        h.update(f.relpath.encode() + b"\x00" + str(len(f.data)).encode() + b"\x00")
        h.update(f.data)
    return h.hexdigest()


def policy_hash(root: Path | None = None) -> str:
    """The bundle hash of a policy directory (what `forge policy hash` prints)."""
    return PolicyBundle.load(root).hash


def check_pinned_hash(expected: str | None, actual: str | None = None,
                      root: Path | None = None) -> str:
    """Raise PolicyHashMismatch (showing both hashes) unless the bundle matches the pin.

    `expected` is the operator's pin (`OPA_POLICY_HASH`); None or "" means no pin. `actual`
    defaults to the hash of `root`. Returns the actual hash.
    """
    current = actual if actual is not None else policy_hash(root)
    if expected:
        pin = expected.strip().lower()
        if not hmac.compare_digest(pin.encode(), current.encode()):
            raise PolicyHashMismatch(pin, current)
    return current
