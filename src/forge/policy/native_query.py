"""Run a compiled query and read its output text with one C call each (issue 19 item 4).

regopy's `Interpreter.query_bundle` wraps the output in a regopy.Output, whose constructor
fetches the output text twice and parses it as JSON (results the engine never reads), and
`str(output)` fetches it a third time: about as long as a small policy's rules. This calls
the same C API of regopy's library once for the query and once for the text, then frees
the output at once (it is not kept).
"""

from __future__ import annotations

import ctypes

import regopy
from regopy import rego_shared

_C = rego_shared.rego


def query_text(interp: regopy.Interpreter, bundle: regopy.Bundle) -> tuple[bool, str]:
    """(ok, text) of `bundle`'s query on `interp` with its current input: the output JSON
    when ok, the engine's error text when not. RegoError when no output was made."""
    out = _C.regoBundleQuery(interp._impl, bundle._impl)
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
