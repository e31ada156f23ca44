"""The Ed25519 signing keyring on disk: one current key signs, retired public keys remain.

Layout of the keyring directory (mode 0700):
  <kid>.key   PKCS#8 PEM private key, mode 0600 (only for keys that may still sign)
  <kid>.pub   PEM SubjectPublicKeyInfo
  <kid>.json  metadata (created_at, retired_at; revoked_at and revoked_reason once revoked)
  current     the key id that signs
Rotation writes the new key, switches `current` atomically, then deletes the old private
key; its public key stays so verdicts and checkpoints it signed keep verifying.
Revocation (a leaked key) also retires it and takes its public key out of every set a
verifier trusts (`trusted_public_keys`, the export, the credential key list): nothing it
signed is trusted any more; `forge keys resign` signs the stored verdicts again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from filelock import FileLock

from forge.config.storage_root import (
    UnsafeStorage,
    check_above,
    check_path,
    make_private_dir,
    make_private_folder,
)
from forge.durable import replace_file, replace_file_among_others
from forge.private_lock import private_lock
from forge.signing.errors import KEY_DIR_ENV as KEY_DIR_ENV
from forge.signing.errors import KeyExists as KeyExists
from forge.signing.errors import NoSigningKey as NoSigningKey
from forge.signing.errors import SigningKeyError as SigningKeyError
from forge.signing.errors import UnknownKey as UnknownKey
from forge.signing.errors import UnsafeKeyring
from forge.signing.export_folder import trusted_keys_folder
from forge_verify.keys import PublicKeyError, key_id_for, load_public_pem, public_pem

_KID_RE = re.compile(r"[0-9a-f]{16}")
log = logging.getLogger("forge.signing.keystore")


@dataclass(frozen=True)
class SigningKey:
    """A loaded private key and its id; signs verdicts and audit checkpoints."""

    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature over `message`."""
        return self.private_key.sign(message)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.private_key.public_key()

    def public_pem(self) -> bytes:
        """The public key as PEM SubjectPublicKeyInfo."""
        return public_pem(self.public_key)

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> SigningKey:
        """Wrap a private key, deriving its id."""
        return cls(key_id_for(key.public_key()), key)


@dataclass(frozen=True)
class KeyInfo:
    """One key as `forge keys list` shows it."""

    key_id: str
    created_at: str
    retired_at: str | None
    current: bool
    can_sign: bool
    revoked_at: str | None = None
    revoked_reason: str | None = None


def keyring_dir(storage_root: Path, environ: Mapping[str, str] | None = None) -> Path:
    """`FORGE_SIGNING_KEY_DIR`, else `<storage_root>/keys/signing`."""
    env = os.environ if environ is None else environ
    raw = env.get(KEY_DIR_ENV, "")
    return Path(raw) if raw else storage_root / "keys" / "signing"


REVOKE_REASON_MAX = 200


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_storage_root(ring: Path) -> bool:  # a storage root's own <root>/keys/signing
    return ring.name == "signing" and ring.parent.name == "keys"


class SigningKeyring:
    """A directory of Ed25519 keys with one current signer."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _lock(self) -> FileLock:
        ring = Path(os.path.abspath(self.directory))
        if _in_storage_root(ring):  # <root>/keys/signing
            make_private_dir(ring.parent.parent, ring)  # UnsafeStorage if not ours
        else:  # named on its own (FORGE_SIGNING_KEY_DIR, --keys-dir): it and the folders above
            try:
                make_private_folder(ring)
            except UnsafeStorage as exc:
                raise UnsafeKeyring(ring, exc) from None
        return private_lock(self.directory / ".lock")

    def _read(self, name: str, *, secret: bool = False) -> bytes:
        """A file of the keyring (``secret``: readable by its owner only), never through a
        link, this user's, from a keyring folder only this user (or root) can change, below
        folders no other user may rename it in; OSError saying why otherwise: whoever can
        put a file there, or their folder in its place, chooses the key that signs."""
        ring = Path(os.path.abspath(self.directory))
        try:
            check_above(ring)
            check_path(self.directory, self.directory, directory=True)
        except UnsafeStorage as exc:
            said = exc if _in_storage_root(ring) else UnsafeKeyring(ring, exc)
            raise OSError(errno.EPERM, str(said)) from None
        fd = os.open(self.directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a plain file")
            if st.st_uid != os.geteuid():
                raise OSError(errno.EPERM, f"owned by uid {st.st_uid}, not by uid "
                                           f"{os.geteuid()}, who could have planted it")
            if secret and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise OSError(errno.EPERM, "readable by others (mode "
                                           f"{stat.S_IMODE(st.st_mode):o}); chmod 600 it")
            return fh.read()

    def _current_id(self) -> str | None:
        try:
            raw = self._read("current").decode("ascii").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            cause = getattr(exc, "strerror", None) or exc.__class__.__name__
            why = f"cannot read 'current' ({cause})"
            raise NoSigningKey(self._no_key(why)) from None
        if _KID_RE.fullmatch(raw) is None:
            raise NoSigningKey(self._no_key("'current' does not hold a key id"))
        return raw

    def _no_key(self, why: str, *, made: bool = True) -> str:
        """Why no key loads, and the command that mends it: `forge keys generate` makes only
        the first key (it refuses once 'current' is there), so a key made but unusable is
        replaced with `forge keys rotate` (the public keys kept verify what it signed)."""
        fix = ("run `forge keys rotate` for a new current key (or restore the key directory)"
               if made else "run `forge keys generate` (or restore the key directory)")
        return f"no loadable Ed25519 signing key in {self.directory}: {why}; {fix}"

    def current_or_none(self) -> SigningKey | None:
        """The current signing key, or None when none can be loaded: none made yet, or one
        unusable (its mode, its PEM, its kid; that is logged as a WARNING, since the audit
        records of retention and reprocessing are then unsigned)."""
        try:
            return self.current()
        except NoSigningKey as exc:
            try:
                present = (self.directory / "current").exists()
            except OSError:  # a directory this process may not read: a key, unusable
                present = True
            if present:  # there is a key, but unusable
                log.warning("%s", exc)
            return None

    def current(self) -> SigningKey:
        """Load the current signing key, or raise NoSigningKey saying why."""
        kid = self._current_id()
        if kid is None:
            raise NoSigningKey(self._no_key("no current key", made=False))
        path = self.directory / f"{kid}.key"
        try:
            data = self._read(path.name, secret=True)
        except OSError as exc:
            raise NoSigningKey(self._no_key(f"cannot read {path.name} ({exc.strerror})")) from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise NoSigningKey(self._no_key(f"{path.name} is not a PEM private key")) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise NoSigningKey(self._no_key(f"{path.name} is not an Ed25519 key"))
        loaded = SigningKey.from_private_key(key)
        if loaded.key_id != kid:
            raise NoSigningKey(self._no_key(f"{path.name} holds key {loaded.key_id}"))
        if self._meta(kid).get("revoked_at"):  # a revoke stopped between its two steps
            raise NoSigningKey(f"the current signing key {kid} in {self.directory} is "
                               "revoked; run `forge keys rotate`")
        return loaded

    def _write_key(self, key: SigningKey) -> None:
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        os.chmod(self.directory, 0o700)
        meta = {"key_id": key.key_id, "algorithm": "ed25519", "created_at": _now(),
                "retired_at": None}
        try:
            replace_file(self.directory / f"{key.key_id}.key", pem, mode=0o600)
            replace_file(self.directory / f"{key.key_id}.pub", key.public_pem(), mode=0o644)
            replace_file(self.directory / f"{key.key_id}.json",
                         json.dumps(meta, sort_keys=True).encode() + b"\n", mode=0o644)
        except BaseException:
            self._discard(key.key_id)
            raise

    def _discard(self, key_id: str) -> None:
        """Remove a key that never became current (its write or its `current` failed, e.g.
        on a full disk): no half-made key is left in the ring."""
        for suffix in (".key", ".pub", ".json"):
            with contextlib.suppress(OSError):
                (self.directory / f"{key_id}{suffix}").unlink(missing_ok=True)

    def _write_current_key(self, key: SigningKey) -> None:
        """Write ``key`` and make it current, or leave the ring as it was. Then retire every
        other key that still holds a private key: only the current key may sign, also when
        the one it replaces was no longer named by 'current' (garbled or deleted, the
        damage `forge keys rotate` / `generate` mend), which `rotate` alone cannot see."""
        self._write_key(key)
        try:
            self._set_current(key.key_id)
        except BaseException:
            self._discard(key.key_id)
            raise
        for kid in self.public_keys():
            if kid != key.key_id and (self.directory / f"{kid}.key").exists():
                self._retire(kid)

    def _set_current(self, key_id: str) -> None:
        replace_file(self.directory / "current", key_id.encode() + b"\n", mode=0o644)

    def generate(self) -> SigningKey:
        """Create the first key; refuses (KeyExists) when a current key is already set."""
        with self._lock():
            if self._current_id() is not None:
                raise KeyExists(f"a current signing key exists in {self.directory}; "
                                "use `forge keys rotate` to replace it")
            key = SigningKey.from_private_key(Ed25519PrivateKey.generate())
            self._write_current_key(key)
            return key

    def ensure(self) -> tuple[SigningKey, bool]:
        """Dev convenience: the current key, generated once if none exists (key, created)."""
        with self._lock():
            if self._current_id() is None:
                key = SigningKey.from_private_key(Ed25519PrivateKey.generate())
                self._write_current_key(key)
                return key, True
        return self.current(), False

    def rotate(self) -> SigningKey:
        """New key becomes current; the old private key is deleted, its public key kept."""
        with self._lock():
            try:
                old = self._current_id()
            except NoSigningKey:  # 'current' unreadable or no key id: the new key replaces it
                old = None
            key = SigningKey.from_private_key(Ed25519PrivateKey.generate())
            self._write_current_key(key)
            if old is not None and old != key.key_id:
                self._retire(old)
            return key

    def _meta(self, key_id: str) -> dict[str, object]:
        """`<kid>.json`, or {} when missing or unreadable."""
        try:
            meta = json.loads((self.directory / f"{key_id}.json").read_text())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _write_meta(self, key_id: str, meta: dict[str, object]) -> None:
        replace_file(self.directory / f"{key_id}.json",
                     json.dumps(meta, sort_keys=True).encode() + b"\n", mode=0o644)

    def _retire(self, key_id: str, **extra: str) -> None:
        """Record `retired_at` (kept if already set) and ``extra``, then delete the private
        key: from here on the key only verifies."""
        meta: dict[str, object] = self._meta(key_id) or {
            "key_id": key_id, "algorithm": "ed25519", "created_at": None}
        meta["retired_at"] = meta.get("retired_at") or _now()
        meta.update(extra)
        self._write_meta(key_id, meta)
        (self.directory / f"{key_id}.key").unlink(missing_ok=True)

    def revoke(self, key_id: str, reason: str = "") -> tuple[bool, SigningKey | None]:
        """Revoke a key that leaked: (newly revoked, the key that signs from now on when
        the revoked one was current, else None). The current key is replaced first, so
        something always signs; revoking twice changes nothing. UnknownKey for a key id
        not in the ring."""
        if len(reason) > REVOKE_REASON_MAX or not reason.isprintable():
            raise SigningKeyError(f"reason: at most {REVOKE_REASON_MAX} printable "
                                  "characters on one line")
        if _KID_RE.fullmatch(key_id) is None or key_id not in self.public_keys():
            raise UnknownKey(f"no key {key_id[:40]!r} in {self.directory} "
                             "(see `forge keys list`)")
        with self._lock():
            if self._meta(key_id).get("revoked_at"):
                return False, None
            replacement = None
            if self._current_id() == key_id:
                replacement = SigningKey.from_private_key(Ed25519PrivateKey.generate())
                self._write_current_key(replacement)
            self._retire(key_id, revoked_at=_now(), revoked_reason=reason)
            return True, replacement

    def revoked_ids(self) -> frozenset[str]:
        """Key ids revoked in this ring."""
        return frozenset(kid for kid in self.public_keys() if self._meta(kid).get("revoked_at"))

    def trusted_public_keys(self) -> dict[str, Ed25519PublicKey]:
        """The public keys a verifier may trust: every key of the ring but the revoked."""
        revoked = self.revoked_ids()
        return {kid: key for kid, key in self.public_keys().items() if kid not in revoked}

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every public key in the ring (current and retired), by key id."""
        keys: dict[str, Ed25519PublicKey] = {}
        if not self.directory.is_dir():
            return keys
        for path in sorted(self.directory.glob("*.pub")):
            if _KID_RE.fullmatch(path.stem) is None:
                continue
            try:
                key = load_public_pem(path.read_bytes())
            except (OSError, PublicKeyError):
                continue
            if key_id_for(key) == path.stem:
                keys[path.stem] = key
        return keys

    def list_keys(self) -> list[KeyInfo]:
        """All keys, oldest first."""
        try:
            current = self._current_id()
        except NoSigningKey:
            current = None
        infos: list[KeyInfo] = []
        for kid in self.public_keys():
            meta = self._meta(kid)
            infos.append(KeyInfo(
                key_id=kid, created_at=str(meta.get("created_at") or "unknown"),
                retired_at=_text(meta.get("retired_at")), current=kid == current,
                can_sign=(self.directory / f"{kid}.key").exists(),
                revoked_at=_text(meta.get("revoked_at")),
                revoked_reason=_text(meta.get("revoked_reason"))))
        return sorted(infos, key=lambda i: (i.created_at, i.key_id))

    def export_public(self, out_dir: Path | None = None) -> bytes:
        """The trusted public keys as concatenated PEM; with `out_dir`, also one
        `<kid>.pem` each (and a revoked key's `<kid>.pem` removed from it)."""
        keys = self.trusted_public_keys()
        if out_dir is not None:
            self.write_public(trusted_keys_folder(out_dir))
        return b"".join(public_pem(k) for k in keys.values())

    def write_public(self, folder: Path) -> int:
        """One `<kid>.pem` per trusted public key into `folder`, an existing folder the
        caller trusts (`trusted_keys_folder` checks one a user names), removing the
        `<kid>.pem` of each revoked key an earlier export left there (a verifier trusts
        every key in the folder); how many were written."""
        keys = self.trusted_public_keys()
        for kid, key in keys.items():
            # No name in the folder is trusted (a file may be planted before it was
            # checked): each key goes under a random name first.
            replace_file_among_others(folder / f"{kid}.pem", public_pem(key))
        for kid in self.revoked_ids():
            (folder / f"{kid}.pem").unlink(missing_ok=True)
        return len(keys)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
