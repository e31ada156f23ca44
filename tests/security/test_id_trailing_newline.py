r"""Attack: pass an id with a trailing newline ("acme\n").

Python's `$` also matches before a final newline, so `re.compile(r"^…$").match` accepted
"acme\n" as a tenant, "bob\n" as a subject (shown the same as "bob"), and a lab or request
id with a newline in it. Every id pattern now ends at `\Z`.
"""

from __future__ import annotations

import pytest

from forge.identity.names import valid_id
from forge.lifecycle.scenario_ids import is_scenario_id
from forge.runtime.plan import LAB_ID_RE
from forge.services.spawn.spawning import REQUEST_ID


@pytest.mark.parametrize("value", ["acme", "bob@example.org"])
def test_ids_without_a_newline_still_pass(value: str) -> None:
    assert valid_id(value)
    assert not valid_id(value + "\n") and not valid_id(value + "\r\n")


def test_lab_request_and_scenario_ids_refuse_a_trailing_newline() -> None:
    assert LAB_ID_RE.match("lab-1") and not LAB_ID_RE.match("lab-1\n")
    assert REQUEST_ID.match("req-00000001") and not REQUEST_ID.match("req-00000001\n")
    scn = "scn-0123456789abcdef"
    assert is_scenario_id(scn) and not is_scenario_id(scn + "\n")
