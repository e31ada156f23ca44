"""The role names a tenant role row holds (`TenantRole.role`), least to most privileged.

One place for the names: identity records and raises roles, the classroom checks who may
manage a cohort, and both compare against the same strings.
"""

from __future__ import annotations

LEARNER, INSTRUCTOR, OPERATOR = "learner", "instructor", "operator"
ROLES = (LEARNER, INSTRUCTOR, OPERATOR)
