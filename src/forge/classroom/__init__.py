"""Classrooms: cohorts of learners, their instructors, invite links and CSV enrolment, and
the labs assigned to a cohort with an opening and closing time (issue 18 item 2).

Roles come from the caller (`forge.identity.roles`, read by the service): an instructor
manages the cohorts they created or were added to, an operator any cohort of their tenant,
a learner none. Windows and attempts are judged by the spawn gate policy (`spawn.rego`),
fed by `forge.classroom.assignments`.
"""
