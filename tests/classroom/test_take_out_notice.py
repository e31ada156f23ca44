"""Taking a learner out on /teach says how they would come back (probe DF).

The page said so for a learner of the class's sign-in group only; one who came from the
class's LMS course (a launch or a roster sync) is enrolled again by the next launch or
sync, as the API's `was_via` and the docs say, but the page said nothing, so an
instructor taking out a student who dropped the course saw them back without knowing
why. Real spawn_service (uvicorn), SQLite and PostgreSQL.
"""

from __future__ import annotations

from forge.classroom import cohorts
from forge.classroom.cohorts import Manager

from ..security.test_cohort_caps import _csrf
from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401
from .test_teach_roster_size import instructor_with_classes


def test_taking_out_a_learner_of_the_lms_course_says_they_may_come_back(
        make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn()
    with env.client() as c:
        _, (a,) = instructor_with_classes(env, c, "Net A")
        cohorts.enrol_subjects(env.state.ctx.db, Manager("acme", "ann", "instructor"), a,
                               ["lti.u7", "lea"], via="lti")
        out = c.post(f"/teach/cohorts/{a}/remove", headers={"origin": env.url},
                     data={"csrf": _csrf(c, "/teach"), "subject": "lti.u7"})
        assert out.status_code == 303, out.text
        said = c.get(out.headers["location"]).text
        assert "lti.u7 is no longer a learner of this class." in said
        assert ("They came in from its LMS course: a launch from the course or a roster "
                "sync enrols them again") in said
