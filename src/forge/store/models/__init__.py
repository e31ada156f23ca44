"""SQLAlchemy 2 models of Forge state; portable types so SQLite and PostgreSQL share them.

One module per concept (labs and the platform, classes, LMS links); every model is
imported from here, so every table is in `Base.metadata` once this package is.
"""

from __future__ import annotations

from forge.store.models.class_tables import (
    Assignment,
    AssignmentAttempt,
    AssignmentAttemptGrant,
    AssignmentExtension,
    Cohort,
    CohortInvite,
    CohortStaff,
    Enrolment,
    TenantRole,
)
from forge.store.models.lab_tables import (
    ApiKey,
    AuditRecord,
    Entitlement,
    FailedEvent,
    FinalizedAudit,
    HintReveal,
    IdempotencyRecord,
    IssuedCredential,
    QuotaSlot,
    RateCounter,
    ReplayJti,
    Scenario,
    ScenarioTransition,
    TaskCheckRun,
)
from forge.store.models.lms_tables import (
    LtiContext,
    LtiGradeLink,
    LtiGradePost,
    LtiUser,
)
from forge.store.models.table_base import NAMING, Base

__all__ = [
    "NAMING",
    "ApiKey",
    "Assignment",
    "AssignmentAttempt",
    "AssignmentAttemptGrant",
    "AssignmentExtension",
    "AuditRecord",
    "Base",
    "Cohort",
    "CohortInvite",
    "CohortStaff",
    "Enrolment",
    "Entitlement",
    "FailedEvent",
    "FinalizedAudit",
    "HintReveal",
    "IdempotencyRecord",
    "IssuedCredential",
    "LtiContext",
    "LtiGradeLink",
    "LtiGradePost",
    "LtiUser",
    "QuotaSlot",
    "RateCounter",
    "ReplayJti",
    "Scenario",
    "ScenarioTransition",
    "TaskCheckRun",
    "TenantRole",
]
