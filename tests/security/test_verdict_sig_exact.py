"""Attack: a verdict.sig changed without touching what it signs — re-indented, an extra
field, a junk second signature, another trailing newline, \\u-escaped key names, a signature
of the wrong length listed before the good one.

Before, every one verified with origin proven: parse_envelope read any spelling and ignored
unknown fields, although score.json and verdict.pub already had to be byte-exact. Now
verdict.sig must be exactly what the platform writes (one signature, canonical JSON), else
the verdict fails with `envelope_not_canonical`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from forge_verify.canonical import dumps_file, loads

from .verdict_sets import codes, sample, signed, verify


def _doc(edit: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def change(sig: bytes) -> bytes:
        doc = loads(sig)
        edit(doc)
        return dumps_file(doc)
    return change


def _junk_second(doc: dict[str, Any]) -> None:
    doc["signatures"].append({"keyid": "junk", "sig": "AAAA"})


def _short_first(doc: dict[str, Any]) -> None:
    doc["signatures"].insert(0, {"keyid": doc["signatures"][0]["keyid"], "sig": "AAAA"})


VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "reindented": lambda sig: json.dumps(json.loads(sig), indent=2).encode() + b"\n",
    "extra_note": _doc(lambda doc: doc.update(note="hi")),
    "junk_second_signature": _doc(_junk_second),
    "short_signature_first": _doc(_short_first),
    "no_trailing_newline": lambda sig: sig.rstrip(b"\n"),
    "two_trailing_newlines": lambda sig: sig + b"\n",
    "escaped_key": lambda sig: sig.replace(b'"payload"', b'"\\u0070ayload"', 1),
}


def test_the_platforms_verdict_sig_is_exact(tmp_path: Path) -> None:
    res = verify(signed(*sample(tmp_path)))
    assert res.ok and res.origin == "proven", res.reasons


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_respelled_verdict_sig_is_envelope_not_canonical(tmp_path: Path,
                                                            variant: str) -> None:
    files = signed(*sample(tmp_path))
    files["verdict.sig"] = VARIANTS[variant](files["verdict.sig"])
    res = verify(files)
    assert "envelope_not_canonical" in codes(res) and not res.ok
    assert res.reasons[codes(res).index("envelope_not_canonical")].message.startswith(
        "verdict.sig: ")
