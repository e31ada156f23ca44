"""An input document handed to rego-cpp as a regopy.Input, built with one C call per node.

Parsing the input as JSON text was most of a query's fixed cost; regopy.Input builds the
engine's document directly, but its own converter (regopy.rego_shared.rego_input_from_value)
spends as long again in Python (abstract-type checks and a string buffer per string). This
one calls the same C API of regopy's library, on a value check_input already accepted
(so only str, int, float, bool, None, dicts and lists/tuples occur).

It declines (None) a value regopy.Input would not carry exactly, so the caller sends JSON
text instead: an integer beyond 64 bits (ctypes would truncate it silently), a string
that is not encodable as UTF-8 (a lone surrogate), a float that six decimal places do not
hold exactly (the C API writes floats as `%f` text: 1.0000004 would reach the policy as
1 and -4e-7 as -0, both past checks the exact value fails), and a subclass of str, int or
float (its str() may differ from the content the input was checked and cached on).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import isfinite
from typing import Any

import regopy
from regopy import rego_shared

_C = rego_shared.rego
_OK = rego_shared.Code.OK
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Declined(Exception):
    """The value does not fit regopy.Input exactly."""


def _check(code: int) -> None:
    if code != _OK:
        raise regopy.RegoError("unable to create input", code)


def _adder(handle: int) -> Callable[[Any], None]:
    """A function adding one value (recursively) to the input being built at `handle`."""
    string, boolean, integer = _C.regoInputString, _C.regoInputBoolean, _C.regoInputInt
    real, null, item = _C.regoInputFloat, _C.regoInputNull, _C.regoInputObjectItem
    obj, array, ok = _C.regoInputObject, _C.regoInputArray, _OK

    def add(value: Any) -> None:
        kind = type(value)
        if kind is str:
            try:
                data = value.encode("utf-8")
            except UnicodeEncodeError:
                raise _Declined from None
            code = string(handle, data)
        elif kind is dict:
            for k, v in value.items():
                add(k)
                add(v)
                _check(item(handle))
            code = obj(handle, len(value))
        elif kind is list or kind is tuple:
            for v in value:
                add(v)
            code = array(handle, len(value))
        elif kind is bool:
            code = boolean(handle, value)
        elif kind is int:
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise _Declined
            code = integer(handle, value)
        elif kind is float:
            if not (isfinite(value) and float(format(value, "f")) == value):
                raise _Declined
            code = real(handle, value)
        elif value is None:
            code = null(handle)
        elif isinstance(value, Mapping):
            add(dict(value))
            return
        elif isinstance(value, list | tuple):
            add(list(value))
            return
        else:
            raise _Declined
        if code != ok:
            raise regopy.RegoError("unable to create input", code)

    return add


def native_input(value: Mapping[str, Any]) -> regopy.Input | None:
    """`value` (already checked by check_input) as a regopy.Input, or None when it would
    not be carried exactly (send it as JSON text then)."""
    handle = _C.regoNewInput()
    try:
        _adder(handle)(value)
    except BaseException as exc:
        _C.regoFreeInput(handle)
        if isinstance(exc, _Declined):
            return None
        raise
    doc = regopy.Input.__new__(regopy.Input)
    doc._impl = handle  # freed by regopy.Input.__del__
    return doc
