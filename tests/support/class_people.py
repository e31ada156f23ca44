"""A class's people on a store: instructors (the role recorded) and learners (a FREE plan),
each with an API key header, as the classroom tests through the API need them."""

from __future__ import annotations

from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.identity.roles import record_role
from forge.store.db import Database


def class_people(db: Database, instructors: tuple[str, ...], learners: tuple[str, ...],
                 tenant: str = "acme") -> dict[str, dict[str, str]]:
    """Each person's `x-api-key` header, by account id."""
    for who in instructors:
        record_role(db, tenant, who, "instructor", source="test")
    for learner in learners:
        grant(db, tenant, "FREE", learner)
    return {who: {"x-api-key": create_api_key(db, tenant, who).plaintext}
            for who in (*instructors, *learners)}
