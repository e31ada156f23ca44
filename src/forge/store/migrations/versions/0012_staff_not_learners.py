"""nobody is both an instructor and a learner of one cohort: end such enrolments

Before this rule, adding an enrolled learner as an instructor, an LMS roster or an LMS
launch could leave a person in both tables for one cohort (counted on its dashboard as a
learner of the class they teach). Their enrolment, and their own due times in that
cohort, end here as `forge.classroom.staff.drop_enrolment` ends them; their labs,
attempts and results stay. Data only: the downgrade changes nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 21:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM assignment_extensions WHERE EXISTS ("
        "SELECT 1 FROM assignments a JOIN cohort_staff s ON s.cohort_id = a.cohort_id "
        "WHERE a.assignment_id = assignment_extensions.assignment_id "
        "AND s.subject = assignment_extensions.subject)")
    op.execute(
        "DELETE FROM enrolments WHERE EXISTS ("
        "SELECT 1 FROM cohort_staff s WHERE s.cohort_id = enrolments.cohort_id "
        "AND s.subject = enrolments.subject)")


def downgrade() -> None:
    pass
