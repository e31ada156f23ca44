"""Attack: an endpoint host the resolver's legacy numeric parser reads as an internal address.

A provider's discovery document (or an LMS registration or launch) names the URLs Forge
calls with a client secret, a code or a signed assertion; internal addresses are refused
unless the issuer itself lives there. Before: only a canonical IP literal counted as
internal, so `0x7f000001`, `2130706433`, `167772161` (10.0.0.1), `10.1` (10.0.0.1),
`127.1`, `0177.0.0.1` or `localhost.` passed the check while getaddrinfo (inet_aton) turns
them into loopback or private addresses. After: every all-numeric host form that is not a
public canonical address is treated as internal, for OIDC and LTI alike (one check).
"""

from __future__ import annotations

import pytest

from forge.identity.oidc_config import endpoint_allowed

ISSUER = "https://idp.example.org"


@pytest.mark.parametrize("host", [
    "0x7f000001", "2130706433", "167772161", "10.1", "127.1", "0177.0.0.1", "0x7f.1",
    "0xa9fea9fe", "169.254.43518", "127.0.0.1.", "localhost.", "0",
])
def test_a_numeric_form_of_an_internal_address_is_refused(host: str) -> None:
    assert not endpoint_allowed(f"https://{host}/token", ISSUER)


def test_public_names_and_addresses_stay_allowed() -> None:
    for host in ("oauth2.example.com", "93.184.215.14", "idp1.example.org", "1a.example"):
        assert endpoint_allowed(f"https://{host}/token", ISSUER), host
