"""A failed criterion's reason on the result pages never gives the answer away: not the lab's
variables (the values checks are fed on stdin or compare against), not the expectation of
the check that failed, not the check's command or where its captured output lies."""

from __future__ import annotations

import re

import pytest

from ..scoreboard.conftest import SECRET
from ..web.test_result_page import Graded, graded  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("sqlite_only_store")

# lab-netplus's failing check: `ip route show 10.61.2.0/24`, expected to match
# "via 10\.61\.1\.1"; its variables are the secret and the web server's port.
NEVER_SHOWN = ("10.61.1.1", "10\\.61\\.1\\.1", "/sbin/ip", "10.61.2.0/24",
               "checks/route-present", "stdout.txt", "answer.txt")


def test_the_result_pages_show_reasons_but_no_expected_value(
        graded: Graded) -> None:  # noqa: F811
    sid = graded.done.scenario_id
    variables = graded.done.body["variables"]
    assert variables["secret"] == SECRET
    for path in (f"/lab/{sid}", f"/lab/{sid}/result"):
        html = graded.client.get(path).text
        assert "it ended with exit code 1" in html  # a reason is given ...
        for value in (*variables.values(), *NEVER_SHOWN):  # ... and nothing of the answer
            # As a word: a random id on the page may hold a short number's digits.
            shown = re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", html)
            assert shown is None, f"{path} shows {value!r}"
