"""Run a compiled query (or entrypoint) and read its output text with one C call each.

regopy's `Interpreter.query_bundle` wraps the output in a regopy.Output, whose constructor
fetches the output text twice and parses it as JSON (results the engine never reads), and
`str(output)` fetches it a third time: about as long as a small policy's rules. This calls
the same C API of regopy's library once for the query and once for the text, then frees
the output at once (it is not kept). A compiled entrypoint (a rule's path) answers a
little faster than the same rule read by a query (issue 19 item 4).
"""

from __future__ import annotations

import ctypes

import regopy
from regopy import rego_shared

_C = rego_shared.rego


def query_text(interp: regopy.Interpreter, bundle: regopy.Bundle) -> tuple[bool, str]:
    """(ok, text) of `bundle`'s query on `interp` with its current input: the output JSON
    when ok, the engine's error text when not. RegoError when no output was made."""
    return _read(interp, _C.regoBundleQuery(interp._impl, bundle._impl))


def _read(interp: regopy.Interpreter, out: int | None) -> tuple[bool, str]:
    """(ok, text) of an output handle, which is freed."""
    if not out:
        raise regopy.RegoError(rego_shared.rego_get_error(interp._impl))
    try:
        ok = bool(_C.regoOutputOk(out))
        size = _C.regoOutputJSONSize(out)
        buf = ctypes.create_string_buffer(size)
        if _C.regoOutputJSON(out, buf, size) != rego_shared.Code.OK:
            raise regopy.RegoError("unable to read the engine's output")
        return ok, buf.value.decode("utf-8")
    finally:
        _C.regoFreeOutput(out)


def entrypoint_text(interp: regopy.Interpreter, bundle: regopy.Bundle,
                    entrypoint: bytes) -> tuple[bool, str]:
    """`query_text` for one entrypoint (`forge/gates/launch`) of a bundle built with it;
    the text is `{"expressions":[value]}`, or `undefined`."""
    out = _C.regoBundleQueryEntrypoint(interp._impl, bundle._impl, entrypoint)
    return _read(interp, out)
