"""The part of an input document each `forge.gates` entry reads (issue 19 item 4).

Moving the input into the engine is most of a query's fixed cost, and both gates were
handed the whole document (the launch gate the spawn fields it never reads, the admit gate
the template). `project(entry, input)` keeps only the fields the entry's rules read, each
exactly as given: a kept field that is absent stays absent, a value of an unexpected type
(a string where an object is expected, an object where a list is) is kept whole, so every
path the rules read has the same value, or the same absence, as in the whole document.
The caller's whole input is what the audit records; only the engine sees the smaller one.

`ENTRY_FIELDS` mirrors the `object.get(input, ...)` paths of the entries' packages;
tests/security/test_policy_input_projection.py proves every path the policies read is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A field spec: WHOLE keeps the value as it is; a dict keeps those keys of an object (each
# by its own spec); a one-element list applies its spec to each element of an array.
WHOLE = True
Spec = Any

_TRAINING: dict[str, Spec] = {
    "template": {
        "name": WHOLE, "track": WHOLE, "tier": WHOLE, "limits": WHOLE,
        "network": {"egress": WHOLE, "allowlist_profile": WHOLE},
        "containers": [{"name": WHOLE, "capabilities": WHOLE}],
    },
    "request": {"track": WHOLE, "template": WHOLE},
    "plan": {"name": WHOLE, "tracks": WHOLE},
}

_ADMIT: dict[str, Spec] = {
    "request": {"request_id": WHOLE, "track": WHOLE},
    "subject": WHOLE,
    "tenant": WHOLE,
    "plan": {"name": WHOLE, "tracks": WHOLE},
    "assignment": WHOLE,
}

ENTRY_FIELDS: dict[str, dict[str, Spec]] = {
    "launch": _TRAINING,
    "admit": _ADMIT,
    "all": {**_TRAINING, **_ADMIT, "request": {**_TRAINING["request"], **_ADMIT["request"]},
            "quota": WHOLE},
}


def _keep(spec: Spec, value: Any) -> Any:
    if spec is WHOLE:
        return value
    if isinstance(spec, dict):
        if not isinstance(value, Mapping):
            return value
        return {k: _keep(spec[k], v) for k, v in value.items() if k in spec}
    if isinstance(value, list | tuple):
        return [_keep(spec[0], v) for v in value]
    return value


def project(entry: str, input: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `input` that `forge.gates.<entry>` reads (KeyError: unknown entry)."""
    return dict(_keep(ENTRY_FIELDS[entry], input))
