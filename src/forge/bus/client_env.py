"""What a client of an embedded server or cluster is handed: the admin `NATS_URL` (tests
and provisioning) and the environment each service reads its URL, password and CA from."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from forge.bus.permissions import ADMIN, SERVICE_IDENTITIES, BusAuth
from forge.bus.ports import LOOPBACK
from forge.bus.tls import BusTls


def admin_urls(auth: BusAuth, ports: Sequence[int]) -> str:
    """`NATS_URL` listing loopback `ports` with the admin user in each (quoted, so any
    generated password survives URL parsing); for tests and provisioning only."""
    creds = auth.credentials(ADMIN)
    user, password = quote(creds.user, safe=""), quote(creds.password, safe="")
    return ",".join(f"nats://{user}:{password}@{LOOPBACK}:{port}" for port in ports)


def service_env(auth: BusAuth, url: str, tls: BusTls | None = None) -> dict[str, str]:
    """`NATS_URL`, every service's `NATS_<SERVICE>_PASSWORD` and, for servers with `tls`,
    `FORGE_NATS_CA`, as a service reads them."""
    env = {"NATS_URL": url}
    if tls is not None:
        env["FORGE_NATS_CA"] = str(tls.ca_file)
    for identity in SERVICE_IDENTITIES:
        if identity in auth.passwords:
            env[f"NATS_{identity.upper()}_PASSWORD"] = auth.credentials(identity).password
    return env
