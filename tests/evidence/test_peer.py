"""Independent implementations accept our verdicts: securesystemslib's DSSE and openssl."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from forge_verify.dsse import INTOTO_PAYLOAD_TYPE, pae, parse_envelope

from .sample import SCENARIO_ID, fixed_key


def _sslib_key(pem: bytes, keyid: str) -> SSlibKey:
    return SSlibKey.from_crypto(load_pem_public_key(pem), keyid=keyid)


def test_securesystemslib_verifies_verdict_sig(result_files: dict[str, Path]) -> None:
    doc = json.loads(result_files["verdict.sig"].read_bytes())
    keyid = doc["signatures"][0]["keyid"]
    envelope = Envelope.from_dict(doc)
    assert envelope.payload_type == INTOTO_PAYLOAD_TYPE
    accepted = envelope.verify([_sslib_key(result_files["verdict.pub"].read_bytes(), keyid)], 1)
    assert list(accepted) == [fixed_key().key_id]
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicate"]["scenario_id"] == SCENARIO_ID
    assert [s["name"] for s in statement["subject"]] == ["score.json", "evidence.tar.zst"]


def test_securesystemslib_rejects_a_verdict_under_another_key(
    result_files: dict[str, Path],
) -> None:
    doc = json.loads(result_files["verdict.sig"].read_bytes())
    keyid = doc["signatures"][0]["keyid"]
    wrong = _sslib_key(fixed_key(3).public_pem(), keyid)
    with pytest.raises(VerificationError):
        Envelope.from_dict(doc).verify([wrong], 1)


def test_our_parser_verifies_an_envelope_signed_by_securesystemslib() -> None:
    signer = CryptoSigner(fixed_key().private_key)
    envelope = Envelope(b'{"hello":"dsse"}', INTOTO_PAYLOAD_TYPE, {})
    envelope.sign(signer)
    ours = parse_envelope(json.dumps(envelope.to_dict()).encode())
    assert ours.payload == b'{"hello":"dsse"}'
    assert ours.verify(fixed_key().public_key) == [signer.public_key.keyid]
    assert envelope.pae() == pae(INTOTO_PAYLOAD_TYPE, b'{"hello":"dsse"}')


def test_pae_matches_the_dsse_spec_example() -> None:
    # DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world")
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world")


def test_openssl_reads_verdict_pub(result_files: dict[str, Path]) -> None:
    subprocess.run(["openssl", "pkey", "-pubin", "-in", str(result_files["verdict.pub"]),
                    "-noout"], check=True, capture_output=True, timeout=30)
    text = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(result_files["verdict.pub"]),
                           "-text", "-noout"], check=True, capture_output=True, text=True,
                          timeout=30).stdout
    assert "ED25519" in text.upper()
    raw = bytes.fromhex("".join(text.split("pub:")[1].split()).replace(":", ""))
    assert raw == base64.b64decode(result_files["verdict.pub"].read_text().split("\n")[1])[-32:]
