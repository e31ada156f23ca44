"""Canonical JSON in the style of RFC 8785 (JCS), and a strict parser for reading it back.

Signed documents must hash the same everywhere, so serialisation is fixed: keys sorted by
their UTF-16 code units, no insignificant whitespace, UTF-8, numbers in ECMAScript's
shortest form (1.0 -> "1", 1e-7 -> "1e-7"). NaN, infinities, integers beyond 2**53 (not
representable in every JSON reader) and lone surrogates are refused. Standard library only.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_SAFE_INTEGER = 2**53


class CanonicalJSONError(ValueError):
    """A value cannot be written as (or was not read from) canonical JSON."""


def _format_float(value: float, path: str) -> str:
    if not math.isfinite(value):
        raise CanonicalJSONError(f"{path}: NaN and infinities are not allowed in JSON")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    # repr() gives the shortest round-tripping digits; re-lay them out the ECMAScript way.
    sign = "-" if value < 0 else ""
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    lead_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    point = len(int_part) + (int(exp_text) if exp_text else 0) - lead_zeros
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        exp = n - 1
        exp_str = f"e+{exp}" if exp >= 0 else f"e{exp}"
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + exp_str
    return sign + text


def _check_string(value: str, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalJSONError(f"{path}: string is not valid Unicode (lone surrogate)") from None
    return json.dumps(value, ensure_ascii=False)


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode(value: Any, path: str, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalJSONError(f"{path}: integer {value} is outside the exact JSON range")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_format_float(value, path))
    elif isinstance(value, str):
        out.append(_check_string(value, path))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalJSONError(f"{path}: object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(_check_string(key, path))
            out.append(":")
            _encode(value[key], f"{path}.{key}", out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, f"{path}[{i}]", out)
        out.append("]")
    else:
        raise CanonicalJSONError(f"{path}: type {type(value).__name__} is not JSON")


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes for `value` (no trailing newline; what gets hashed or signed)."""
    out: list[str] = []
    _encode(value, "$", out)
    return "".join(out).encode("utf-8")


def dumps_file(value: Any) -> bytes:
    """Canonical JSON bytes plus the single trailing newline used for files on disk."""
    return dumps(value) + b"\n"


def _reject_constant(name: str) -> Any:
    raise CanonicalJSONError(f"{name} is not allowed in JSON")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, val in pairs:
        if key in result:
            raise CanonicalJSONError(f"duplicate object key {key!r}")
        result[key] = val
    return result


def _finite_float(text: str) -> float:
    """A JSON number as float; one too large for a float (1e999 reads as inf) is refused."""
    value = float(text)
    if not math.isfinite(value):
        raise CanonicalJSONError(f"number {text[:20]!r} is too large")
    return value


def loads(data: bytes | str) -> Any:
    """Parse JSON strictly: UTF-8 only, no NaN/Infinity (nor numbers overflowing to them), no
    duplicate keys. Every failure is a CanonicalJSONError in plain words, never a bare
    ValueError or RecursionError, so callers name the file instead of showing a traceback."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CanonicalJSONError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    else:
        text = data
    try:
        return json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_unique_pairs,
            parse_float=_finite_float,
        )
    except CanonicalJSONError:
        raise
    except json.JSONDecodeError as exc:
        raise CanonicalJSONError(f"invalid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise CanonicalJSONError("invalid JSON: nested too deeply") from None
    except ValueError:  # Python refuses integers of more than 4300 digits with a bare one
        raise CanonicalJSONError("invalid JSON: a number has too many digits") from None


def is_canonical_file(data: bytes) -> bool:
    """True when `data` is exactly the canonical file form of what it parses to."""
    try:
        return dumps_file(loads(data)) == data
    except CanonicalJSONError:
        return False
