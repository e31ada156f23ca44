"""The credential formats of `forge_verify.credential` as their specifications state them, so
that other verifiers read what Forge issues: the Bitstring Status List's bit order and
encoding, VCDM 2.0 `digestSRI`, and strict compact-JWS decoding."""

from __future__ import annotations

import base64
import gzip
import hashlib

import pytest

from forge_verify.credential import (
    STATUS_LIST_BITS,
    CredentialFormatError,
    decode_compact,
    digest_sri,
    encode_status_list,
    sri_hex,
    status_bit,
)


def test_status_list_is_gzip_base64url_multibase_with_index_0_the_first_bit() -> None:
    encoded = encode_status_list([0, 9, STATUS_LIST_BITS - 1])
    assert encoded.startswith("u") and "=" not in encoded
    raw = gzip.decompress(base64.urlsafe_b64decode(encoded[1:] + "=" * (-len(encoded) % 4)))
    assert len(raw) == STATUS_LIST_BITS // 8 == 16 * 1024  # the specification's minimum size
    assert raw[0] == 0b1000_0000 and raw[1] == 0b0100_0000 and raw[-1] == 0b0000_0001
    assert [status_bit(encoded, i) for i in (0, 1, 8, 9, STATUS_LIST_BITS - 1)] == [
        True, False, False, True, True]
    with pytest.raises(CredentialFormatError, match="outside the list"):
        status_bit(encoded, STATUS_LIST_BITS)


def test_digest_sri_is_base64_sha256_and_reads_back_as_hex() -> None:
    data = b"verdict"
    sri = digest_sri(data)
    assert sri == "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert sri_hex(sri) == hashlib.sha256(data).hexdigest()
    assert sri_hex("sha384-" + sri[7:]) is None and sri_hex(None) is None


@pytest.mark.parametrize("token", [
    "a.b", "a.b.c.d", "eyJhIjoxfQ==.eyJhIjoxfQ.AA", "eyJhIjoxfQ.W10.AA", "e30.e30.*",
    "x" * (256 * 1024 + 1),
])
def test_compact_jws_is_decoded_strictly(token: str) -> None:
    with pytest.raises(CredentialFormatError):
        decode_compact(token)
