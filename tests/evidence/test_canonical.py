"""Canonical JSON: the exact bytes every signature and digest depends on."""

from __future__ import annotations

import json

import pytest

from forge_verify.canonical import CanonicalJSONError, dumps, dumps_file, is_canonical_file, loads


def test_keys_sorted_no_whitespace_utf8_and_one_newline_for_files() -> None:
    value = {"b": [1, True, None], "a": "é", "c": {"z": 1, "y": "x"}}
    assert dumps(value) == '{"a":"é","b":[1,true,null],"c":{"y":"x","z":1}}'.encode()
    assert dumps_file(value) == dumps(value) + b"\n"


@pytest.mark.parametrize(
    ("number", "text"),
    [(1.0, "1"), (0.0, "0"), (-0.0, "0"), (0.75, "0.75"), (1e-7, "1e-7"), (1.5e-5, "0.000015"),
     (123.456, "123.456"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
     (-2.5e-9, "-2.5e-9"), (0.1 + 0.2, "0.30000000000000004"), (2**53, "9007199254740992")],
)
def test_numbers_use_the_ecmascript_shortest_form(number: float, text: str) -> None:
    assert dumps(number) == text.encode()


def test_keys_sort_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is a surrogate pair (D83D...) and so sorts before U+FF5E in UTF-16.
    assert dumps({"\uff5e": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\uff5e":1}'.encode()


def test_control_characters_are_escaped_as_json_stringify_does() -> None:
    assert dumps("a\nb\x01\"\\") == b'"a\\nb\\u0001\\"\\\\"'


@pytest.mark.parametrize(
    ("value", "field"),
    [({"x": float("nan")}, "$.x"), ([float("inf")], "$[0]"), ({"n": 2**60}, "$.n"),
     ({"s": "\ud800"}, "$.s"), ({1: "a"}, "$"), ({"o": object()}, "$.o")],
)
def test_values_without_an_exact_canonical_form_are_refused_naming_the_path(
    value: object, field: str
) -> None:
    with pytest.raises(CanonicalJSONError, match=field.replace("$", r"\$").replace("[", r"\[")):
        dumps(value)


def test_strict_parser_refuses_nan_duplicates_and_non_utf8() -> None:
    for bad in (b'{"a":NaN}', b'{"a":1,"a":2}', b'"\xff"', b"[1,"):
        with pytest.raises(CanonicalJSONError):
            loads(bad)
    assert loads(b'{"a":[1,2.5]}') == {"a": [1, 2.5]}


def test_is_canonical_file_accepts_only_the_exact_form() -> None:
    doc = {"b": 1, "a": [0.5]}
    assert is_canonical_file(dumps_file(doc))
    assert not is_canonical_file(dumps(doc))
    assert not is_canonical_file(json.dumps(doc).encode() + b"\n")
