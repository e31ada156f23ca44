"""The policy bundle on disk: which files it holds and its hash.

Hash = sha256 over the bundle's files sorted by relative POSIX path, each framed as
`path NUL size NUL bytes` so no two different bundles can hash alike. Every `*.rego` file
(tests included) and every `data.json` (the tables the rules read, forge.policy.policy_data)
is part of the bundle, so a changed table changes the hash. `forge policy hash` prints
it; the orchestrator logs it at start and refuses to start when `OPA_POLICY_HASH` is set
and differs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.config.trusted_tree import chosen_content
from forge.content import POLICIES, content_path
from forge.policy.decision import PolicyError, PolicyHashMismatch
from forge.policy.policy_data import DATA_FILE, check_data_fits, merge_data

TEST_SUFFIX = "_test.rego"
# How many folders deep a policy directory may nest (the shipped one: none), so the walk
# that checks nobody else could have written a file of it is bounded.
MAX_POLICY_DEPTH = 8
# Files `opa run --server DIR` would load as data besides `data.json` (any JSON or YAML
# file, at its directory's path) and bundle archives: refused, not silently skipped, so
# OPA can never serve a table that this engine, the hash and the pin do not see.
_UNREAD_DATA = ("*.json", "*.yaml", "*.yml", "*.tar.gz")


def default_policy_dir() -> Path:
    """`FORGE_POLICY_DIR`, else the policies shipped in the package."""
    env = os.environ.get("FORGE_POLICY_DIR")
    return Path(env) if env else content_path(POLICIES)


@dataclass(frozen=True)
class PolicyFile:
    """One bundle file (a Rego module or a data file): its path relative to the bundle root
    and its bytes."""

    relpath: str
    data: bytes

    @property
    def is_test(self) -> bool:
        """Rego unit tests (`*_test.rego`) are hashed but never loaded for decisions."""
        return self.relpath.endswith(TEST_SUFFIX)

    @property
    def is_data(self) -> bool:
        """A data document (`data.json`), loaded into every interpreter."""
        return self.relpath.rsplit("/", 1)[-1] == DATA_FILE


@dataclass(frozen=True)
class PolicyBundle:
    """The policy files of one directory, read once, and their hash."""

    root: Path
    files: tuple[PolicyFile, ...]
    hash: str
    # The merged data document of the data files (checked at load), read by the rules.
    data: dict[str, Any]

    @classmethod
    def load(cls, root: Path | None = None) -> PolicyBundle:
        """Read every `*.rego` and `data.json` under `root` (recursively, symlinks refused);
        PolicyError naming the file when a data file is malformed or a table is missing, or
        when another local user owns or may write it or a folder above (`chosen_content`)."""
        base = root if root is not None else default_policy_dir()
        if not base.is_dir():
            raise PolicyError(f"policy directory not found: {base}")
        chosen = chosen_content(base, depth=MAX_POLICY_DEPTH, whole=True)
        if chosen is not None:  # its rules would be another user's: refused, not loaded
            raise PolicyError(f"policy directory {base}: {chosen}")
        files: list[PolicyFile] = []
        paths = [*base.rglob("*.rego"), *base.rglob(DATA_FILE)]
        for pattern in _UNREAD_DATA:
            for path in base.rglob(pattern):
                if path.name != DATA_FILE:
                    raise PolicyError(f"policy data must be a JSON file named {DATA_FILE}, "
                                      f"refused: {path}")
        for path in base.rglob("*"):
            if path.is_symlink():  # rglob does not descend into a linked directory
                raise PolicyError(f"policy directory holds a symlink (refused): {path}")
        for path in sorted(paths):
            if path.is_symlink():
                raise PolicyError(f"policy file is a symlink (refused): {path}")
            if path.is_file():
                files.append(PolicyFile(path.relative_to(base).as_posix(), path.read_bytes()))
        files.sort(key=lambda f: f.relpath.encode())
        if not any(not f.is_test and not f.is_data for f in files):
            raise PolicyError(f"no policy modules (*.rego) in {base}")
        data_files = [f for f in files if f.is_data]
        data = merge_data((f.relpath, f.data) for f in data_files)
        sources = []
        for f in files:
            if not f.is_data:
                try:
                    sources.append((f.relpath, f.data.decode("utf-8")))
                except UnicodeDecodeError as exc:
                    raise PolicyError(f"policy module {f.relpath} is not UTF-8") from exc
        check_data_fits(sources, data, [f.relpath for f in data_files])
        return cls(base, tuple(files), hash_files(files), data)

    @property
    def modules(self) -> tuple[PolicyFile, ...]:
        """Decision modules (tests and data files excluded)."""
        return tuple(f for f in self.files if not f.is_test and not f.is_data)

    @property
    def data_files(self) -> tuple[PolicyFile, ...]:
        """The data files (`data.json`), merged into `data`."""
        return tuple(f for f in self.files if f.is_data)

    @property
    def decision_files(self) -> tuple[PolicyFile, ...]:
        """What a decision depends on: the modules and the data files."""
        return tuple(f for f in self.files if not f.is_test)

    @property
    def tests(self) -> tuple[PolicyFile, ...]:
        """Rego unit-test modules."""
        return tuple(f for f in self.files if f.is_test)


@functools.cache
def shipped_decision_hash() -> str:
    """Hash of the decision modules and data shipped in the package (whatever
    FORGE_POLICY_DIR says)."""
    return hash_files(PolicyBundle.load(content_path(POLICIES)).decision_files)


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
