"""DSSE envelopes (Dead Simple Signing Envelope v1) signed with Ed25519.

The signature covers the pre-authentication encoding
`"DSSEv1" SP len(type) SP type SP len(body) SP body` (lengths as ASCII decimal), so the
payload type cannot be swapped. The envelope is JSON: payload (base64), payloadType,
signatures [{keyid, sig (base64)}]. Standard library + cryptography only.

`parse_envelope` reads any DSSE spelling (other implementations' envelopes too); a verdict.sig
must moreover be exactly the file the platform writes, `Envelope.to_json()` of a one-signature
envelope (`exact_problem` says why not), so no byte of it can change unnoticed: re-indenting,
extra fields, a second signature or escaped key names all keep the signature valid.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from forge_verify.canonical import CanonicalJSONError, dumps_file, loads
from forge_verify.keys import Signer

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class EnvelopeError(ValueError):
    """The envelope is not a well-formed DSSE JSON envelope."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    """One envelope signature."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        """Canonical JSON file bytes of the envelope."""
        return dumps_file({
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        })

    def verify(self, key: Ed25519PublicKey) -> list[str]:
        """Key ids of the signatures `key` verifies (empty: none does)."""
        message = pae(self.payload_type, self.payload)
        good: list[str] = []
        for s in self.signatures:
            try:
                key.verify(s.sig, message)
            except InvalidSignature:
                continue
            good.append(s.keyid)
        return good


def sign_envelope(payload: bytes, payload_type: str, signer: Signer) -> Envelope:
    """Sign `payload` into a one-signature envelope."""
    sig = signer.sign(pae(payload_type, payload))
    return Envelope(payload_type, payload, (Signature(signer.key_id, sig),))


def _b64(value: object, field: str) -> bytes:
    """Decode standard or URL-safe base64, accepting only its canonical spelling.

    Non-canonical spellings (stray padding bits, missing padding) would let a file change
    without its meaning changing; refusing them makes every altered bit detectable.
    """
    if not isinstance(value, str) or not value.isascii():
        raise EnvelopeError(f"{field}: must be a base64 string")
    for decode, encode in ((base64.b64decode, base64.b64encode),
                           (base64.urlsafe_b64decode, base64.urlsafe_b64encode)):
        try:
            raw = decode(value.encode("ascii"), validate=True) if decode is base64.b64decode \
                else decode(value.encode("ascii"))
        except (binascii.Error, ValueError):
            continue
        if encode(raw).decode("ascii") == value:
            return raw
    raise EnvelopeError(f"{field}: not canonical base64")


def exact_problem(data: bytes, envelope: Envelope) -> str | None:
    """Why `data` (that parsed to `envelope`) is not the file the platform writes for it: one
    signature, canonical JSON of exactly the DSSE fields, one trailing newline; else None."""
    if len(envelope.signatures) != 1:
        return f"holds {len(envelope.signatures)} signatures; a verdict has exactly one"
    if envelope.to_json() != data:
        return ("bytes differ from the canonical form of the envelope they hold (re-spelled, "
                "extra fields or whitespace: altered?)")
    return None


def parse_envelope(data: bytes) -> Envelope:
    """Parse envelope JSON, naming the first field that is wrong."""
    try:
        doc = loads(data)
    except CanonicalJSONError as exc:
        raise EnvelopeError(str(exc)) from None  # callers name the file
    if not isinstance(doc, dict):
        raise EnvelopeError("verdict.sig: not a JSON object")
    payload_type = doc.get("payloadType")
    if not isinstance(payload_type, str):
        raise EnvelopeError("payloadType: missing or not a string")
    payload = _b64(doc.get("payload"), "payload")
    sigs = doc.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise EnvelopeError("signatures: must be a non-empty list")
    parsed: list[Signature] = []
    for i, s in enumerate(sigs):
        if not isinstance(s, dict):
            raise EnvelopeError(f"signatures[{i}]: not an object")
        keyid = s.get("keyid", "")
        if not isinstance(keyid, str):
            raise EnvelopeError(f"signatures[{i}].keyid: not a string")
        parsed.append(Signature(keyid, _b64(s.get("sig"), f"signatures[{i}].sig")))
    return Envelope(payload_type, payload, tuple(parsed))
