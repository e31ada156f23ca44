"""Attack: verdict files holding JSON Python cannot or should not read (a 5000-digit integer,
a number overflowing to infinity, 3000 nested brackets, weights summing past the float range).

Before, the verifier died with a traceback (ValueError "Exceeds the limit (4300 digits)",
RecursionError, OverflowError in the score's sum) or accepted NaN in a recording. Now each is
a reason naming the file, in plain words, and the run ends with FAIL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_verify.canonical import CanonicalJSONError, dumps_file, loads

from .verdict_sets import codes, sample, signed, verify

BIG = b"1" * 5000
PYTHON_WORDS = ("set_int_max_str_digits", "Exceeds the limit", "recursion", "fsum")


def _plain(messages: list[str]) -> None:
    for message in messages:
        assert not any(w in message for w in PYTHON_WORDS), message


@pytest.mark.parametrize("raw", [b'{"a":' + BIG + b"}", b'{"a":1e999}', b'{"a":-1e999}',
                                 b"[" * 3000])
def test_strict_parser_refuses_in_plain_words(raw: bytes) -> None:
    with pytest.raises(CanonicalJSONError) as err:
        loads(raw)
    _plain([str(err.value)])


def test_a_huge_integer_in_score_json_is_score_invalid(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    files = signed(score_json.replace(b'"retention_days":30', b'"retention_days":' + BIG),
                   members)
    res = verify(files)
    assert "score_invalid" in codes(res)
    _plain([r.message for r in res.reasons])


def test_a_huge_integer_in_verdict_sig_is_envelope_invalid(tmp_path: Path) -> None:
    files = signed(*sample(tmp_path))
    files["verdict.sig"] = files["verdict.sig"].replace(b"{", b'{"n":' + BIG + b",", 1)
    res = verify(files)
    assert codes(res)[0] == "envelope_invalid"
    assert res.reasons[0].message.startswith("verdict.sig: invalid JSON")
    _plain([r.message for r in res.reasons])


def test_a_huge_integer_in_aids_json_is_named(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    members["aids.json"] = b'{"hints":[],"task_checks":[' + BIG + b"]}\n"
    res = verify(signed(score_json, members))
    assert codes(res) == ["criterion_inconsistent"]
    assert res.reasons[0].message.startswith("aids.json: invalid JSON")
    _plain([r.message for r in res.reasons])


def test_weights_summing_past_the_float_range_are_score_inconsistent(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    doc = loads(score_json)
    for crit in doc["criteria"]:
        crit["weight"] = 1e308
    res = verify(signed(dumps_file(doc), members))
    assert "score_inconsistent" in codes(res)
    assert any("total weight is too large" in r.message for r in res.reasons)


def test_an_infinite_weight_is_score_invalid(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    res = verify(signed(score_json.replace(b'"weight":2', b'"weight":1e999'), members))
    assert "score_invalid" in codes(res)


@pytest.mark.parametrize("body", [b"[" * 3000, b'{"version":2,"width":80,"height":24}\n'
                                  b'[NaN,"o","x"]\n'])
def test_a_listed_hostile_recording_is_recording_invalid(tmp_path: Path, body: bytes) -> None:
    score_json, members = sample(tmp_path)
    members["recordings/learner.2.cast"] = body
    res = verify(signed(score_json, members))
    assert codes(res) == ["recording_invalid"]
    assert "recordings/learner.2.cast: not asciicast v2 JSON lines" in res.reasons[0].message


def test_an_unlisted_recording_is_member_extra_and_not_parsed(tmp_path: Path) -> None:
    score_json, members = sample(tmp_path)
    files = signed(score_json, members)
    from forge_verify.bundle import _tar_bytes, compress, read_bundle

    inside = read_bundle(files["evidence.tar.zst"])
    inside["recordings/learner.2.cast"] = b"[" * 3000
    files["evidence.tar.zst"] = compress(_tar_bytes(inside), "zst")
    res = verify(files)
    assert "member_extra" in codes(res) and "recording_invalid" not in codes(res)


def test_a_deeply_nested_credential_header_is_a_format_error() -> None:
    from forge_verify.credential import CredentialFormatError, b64url_encode, decode_compact

    token = ".".join([b64url_encode(b"[" * 3000), b64url_encode(b"{}"), b64url_encode(b"x")])
    with pytest.raises(CredentialFormatError):
        decode_compact(token)
