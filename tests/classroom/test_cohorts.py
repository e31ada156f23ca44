"""Cohorts, invite links, CSV and group enrolment, assignments and attempts on a real store
(SQLite and PostgreSQL): who may manage what, and what a learner can join."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from forge.classroom import assignments as asg
from forge.classroom import (
    attempt_grants,
    attempts,
    class_changes,
    cohort_invites,
    cohorts,
    lti_links,
    staff,
)
from forge.classroom.cohorts import Manager
from forge.classroom.lti_links import CourseSeat
from forge.classroom.roster_csv import parse_roster
from forge.errors import ForgeError
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import Cohort, CohortInvite

from ..support.sql_statements import sql_statements

T1, T2 = "acme", "globex"
ANN = Manager(T1, "ann", "instructor")
BOB = Manager(T1, "bob", "instructor")
OPS = Manager(T1, "olga", "operator")
LEA = Manager(T1, "lea", "learner")
OTHER = Manager(T2, "ann", "instructor")


@pytest.fixture
def db(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def code(exc: pytest.ExceptionInfo[ForgeError]) -> tuple[int, str]:
    return exc.value.status, exc.value.code


def test_who_manages_a_cohort(db: Database) -> None:
    with pytest.raises(ForgeError) as learner:
        cohorts.create_cohort(db, LEA, "Networking 101")
    assert code(learner) == (403, "instructor_required")
    c = cohorts.create_cohort(db, ANN, "Networking 101", idp_group="net-101")
    assert [x.cohort_id for x in cohorts.cohorts_of(db, ANN)] == [c.cohort_id]
    assert cohorts.cohorts_of(db, BOB) == []
    assert [x.cohort_id for x in cohorts.cohorts_of(db, OPS)] == [c.cohort_id]
    for outsider in (BOB, OTHER):  # another instructor of the tenant, another tenant
        with pytest.raises(ForgeError) as exc:
            cohorts.members(db, outsider, c.cohort_id)
        assert code(exc) == (404, "cohort_not_found")
    staff.add_instructor(db, ANN, c.cohort_id, "bob")
    assert cohorts.members(db, BOB, c.cohort_id) == []
    # Letter case is checked as for roster lines: "BOB" beside "bob" would be a second
    # instructor nobody signs in as (and "LEA" beside the learner a mistaken promotion).
    cohorts.enrol_subjects(db, ANN, c.cohort_id, ["lea"])
    for typo, held in (("BOB", '"bob"'), ("Lea", '"lea"')):
        with pytest.raises(ForgeError) as clash:
            staff.add_instructor(db, ANN, c.cohort_id, typo, confirm=True)
        assert code(clash) == (422, "validation_error")
        assert str(clash.value).startswith(f'subject: "{typo}" is the class\'s ')
        assert f"{held} in other letter case" in str(clash.value)
    assert [m.subject for m in cohorts.members(db, ANN, c.cohort_id)] == ["lea"]


def test_invite_link_is_hashed_shared_and_revocable(db: Database) -> None:
    c = cohorts.create_cohort(db, ANN, "Networking 101")
    invite, token = cohort_invites.make_invite(db, ANN, c.cohort_id, days=7)
    with db.read() as sess:
        stored = sess.scalars(select(CohortInvite)).one()
        assert token not in (stored.token_sha256, stored.invite_id)  # only its hash is kept
    for learner in ("lea", "leo"):  # many learners, one link
        assert cohort_invites.join_by_invite(db, T1, learner, token).cohort_id == c.cohort_id
    assert cohort_invites.join_by_invite(db, T1, "lea", token).cohort_id == c.cohort_id  # again: same
    with pytest.raises(ForgeError) as other_tenant:
        cohort_invites.join_by_invite(db, T2, "eve", token)
    assert code(other_tenant) == (404, "invite_invalid")
    cohort_invites.revoke_invite(db, ANN, c.cohort_id, invite.invite_id)
    with pytest.raises(ForgeError) as revoked:
        cohort_invites.join_by_invite(db, T1, "lia", token)
    assert code(revoked) == (404, "invite_invalid")
    assert [m.subject for m in cohorts.members(db, ANN, c.cohort_id)] == ["lea", "leo"]
    # An expired link: refused the same way.
    invite, token = cohort_invites.make_invite(db, ANN, c.cohort_id, days=1)
    with db.session() as sess:
        row = sess.get(CohortInvite, invite.invite_id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(ForgeError) as exc:
        cohort_invites.join_by_invite(db, T1, "lea", token)
    assert code(exc) == (404, "invite_invalid")


def test_group_claim_enrols(db: Database) -> None:
    c = cohorts.create_cohort(db, ANN, "Networking 101", idp_group="net-101")
    cohorts.create_cohort(db, OTHER, "Elsewhere", idp_group="net-101")  # other tenant
    assert cohorts.enrol_by_groups(db, T1, "lea", ["staff", "net-101"]) == 1
    assert cohorts.enrol_by_groups(db, T1, "lea", ["net-101"]) == 0  # already in
    assert cohorts.enrolled_cohorts(db, T1, "lea") == [c.cohort_id]
    assert [m.via for m in cohorts.members(db, ANN, c.cohort_id)] == ["group"]
    # A group pasted with spaces around it matched nobody, silently: it is kept trimmed,
    # and one of spaces alone is refused naming the field.
    pasted = cohorts.create_cohort(db, ANN, "Networking 102", idp_group=" net-102\t ")
    assert pasted.idp_group == "net-102"
    assert cohorts.enrol_by_groups(db, T1, "lea", ["net-102"]) == 1
    with pytest.raises(ForgeError) as blank:
        cohorts.create_cohort(db, ANN, "Networking 103", idp_group="   ")
    assert code(blank) == (422, "validation_error")
    assert blank.value.details[0]["field"] == "idp_group"


def test_roster_csv_all_or_nothing() -> None:
    assert parse_roster(b"subject\nlea\nleo@example.org\nlea\n") == ["lea", "leo@example.org"]
    with pytest.raises(ForgeError) as exc:
        parse_roster(b"lea\nleo\n../etc/passwd\n")
    assert (exc.value.status, exc.value.code) == (422, "csv_invalid")
    # The line and its text: a teacher with 200 lines sees which one to fix.
    assert exc.value.message.startswith('csv: line 3: "../etc/passwd" is not an account id')
    with pytest.raises(ForgeError) as two:
        parse_roster(b"lea\nSmith, John\n")
    assert 'line 2: expected one column' in two.value.message
    assert '"Smith,John"' in two.value.message
    with pytest.raises(ForgeError) as long_cell:  # a long or odd cell: bounded, no control
        parse_roster(b"lea\n\"" + b"\x1b[2J" + b"y" * 300 + b"\"\n")
    shown = long_cell.value.message.split('"')[1]
    assert shown == "?[2J" + "y" * 36 + "…" and "\x1b" not in long_cell.value.message
    # A bidi override or a zero-width space cannot reorder or hide the message around it.
    with pytest.raises(ForgeError) as bidi:
        parse_roster("lea\nann\u202e\u200bx\x9b\u2028y\n".encode())
    assert '"ann??x??y"' in bidi.value.message
    # A file that is not UTF-8 names the line of its first such byte (it said line 1
    # wherever the accent was).
    with pytest.raises(ForgeError) as latin:
        parse_roster(b"subject\nlea\nb\xe9b\n")
    assert latin.value.message.startswith("csv: line 3: not UTF-8 text (byte 13)"), \
        latin.value.message
    assert latin.value.details[0]["line"] == 3
    with pytest.raises(ForgeError) as big:
        parse_roster(b"a" * (300 * 1024))
    assert big.value.status == 413


def test_roster_csv_any_line_ends_and_a_malformed_file_is_a_422() -> None:
    """An old Mac export (CR alone) or mixed line ends are read like LF; a field longer
    than the csv module's limit is the instructor's 422 naming the line, never a 500."""
    assert parse_roster(b"subject\rlea\rleo\r") == ["lea", "leo"]
    assert parse_roster(b"lea\r\nleo\rlia\n") == ["lea", "leo", "lia"]
    with pytest.raises(ForgeError) as exc:
        parse_roster(b"lea\n" + b"x" * 140_000 + b"\n")
    assert (exc.value.status, exc.value.code) == (422, "csv_invalid")
    assert exc.value.details[0]["line"] == 2


def test_attempts_taken_once_per_request_and_bounded(db: Database) -> None:
    c = cohorts.create_cohort(db, ANN, "Networking 101")
    now = datetime.now(UTC)
    a = asg.create_assignment(db, ANN, c.cohort_id, template_id="netplus",
                              opens_at=now - timedelta(minutes=1),
                              closes_at=now + timedelta(minutes=5), attempts_allowed=2,
                              hints_allowed=False, known_templates={"netplus"})
    assert attempts.take_attempt(db, a.assignment_id, "lea", "req-1", 2) == (1, True)
    assert attempts.take_attempt(db, a.assignment_id, "lea", "req-1", 2) == (1, False)  # a retry
    assert attempts.take_attempt(db, a.assignment_id, "lea", "req-2", 2) == (2, True)
    assert attempts.take_attempt(db, a.assignment_id, "lea", "req-3", 2) is None
    assert attempts.attempt_of_request(db, a.assignment_id, "lea", "req-2") == 2
    attempts.settle_attempt(db, a.assignment_id, "lea", 2, None)  # that spawn failed: given back
    assert attempts.take_attempt(db, a.assignment_id, "lea", "req-3", 2) == (2, True)
    with pytest.raises(ForgeError) as exc:
        asg.applicable(db, T1, "lea", "netplus", a.assignment_id, now)  # lea not enrolled
    assert code(exc) == (404, "assignment_not_found")


def test_a_learners_list_holds_current_assignments_in_a_fixed_number_of_queries(
        db: Database) -> None:
    """Cohorts and their assignments only grow, term after term; the learner's list (the
    /tracks page on every load, GET /v1/assignments) read every assignment ever made with
    a query each for its attempts. Now: open, upcoming and those closed in the last 30
    days, by due time, in a fixed number of queries; an older one is still found by id
    (an LMS link to it)."""

    now = datetime.now(UTC)
    c = cohorts.create_cohort(db, ANN, "Networking 101")
    cohorts.enrol_subjects(db, ANN, c.cohort_id, ["lea"])

    def assign(opens: timedelta, closes: timedelta) -> str:
        return asg.create_assignment(db, ANN, c.cohort_id, template_id="netplus",
                                     opens_at=now + opens, closes_at=now + closes,
                                     attempts_allowed=3, hints_allowed=False,
                                     known_templates={"netplus"}).assignment_id

    old = assign(timedelta(days=-70), timedelta(days=-60))
    recent = assign(timedelta(days=-20), timedelta(days=-10))
    current = [assign(timedelta(minutes=-1), timedelta(days=i + 1)) for i in range(5)]
    upcoming = assign(timedelta(days=10), timedelta(days=11))
    for n, aid in enumerate(current):
        for attempt in range(n % 3):
            attempts.take_attempt(db, aid, "lea", f"req-{n}-{attempt}", 3)
    with sql_statements(db) as statements:
        mine = asg.my_assignments(db, T1, "lea")
    assert [a["assignment_id"] for a in mine] == [recent, *current, upcoming]
    assert [a["attempts_used"] for a in mine[1:6]] == [n % 3 for n in range(5)]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 3, selects  # the list and one count of attempts, not one each
    found = asg.my_assignment(db, T1, "lea", old)
    assert found is not None and found["assignment_id"] == old
    assert asg.my_assignment(db, T1, "leo", old) is None  # not in the cohort


def test_the_classes_own_instructors_do_not_join_it_as_learners(db: Database) -> None:
    """Ann opens the invite link she shares (to check it): before, that enrolled her as a
    learner of her own class, counted on its dashboard. A colleague she added is refused
    the same way; a learner joins as before, and nothing of a refusal is stored."""
    c = cohorts.create_cohort(db, ANN, "Networking 101")
    staff.add_instructor(db, ANN, c.cohort_id, "bob")
    _, token = cohort_invites.make_invite(db, ANN, c.cohort_id)
    for teacher in ("ann", "bob"):
        with pytest.raises(ForgeError) as exc:
            cohort_invites.join_by_invite(db, T1, teacher, token)
        assert code(exc) == (409, "cohort_staff")
        assert exc.value.details == [{"field": "invite"}]
    assert cohort_invites.join_by_invite(db, T1, "lea", token).cohort_id == c.cohort_id
    assert [m.subject for m in cohorts.members(db, ANN, c.cohort_id)] == ["lea"]


def test_a_roster_listing_the_classes_instructors_enrols_only_its_learners(
    db: Database
) -> None:
    """An LMS export lists the teacher with the class: a roster naming Ann and her
    colleague Bob enrols the learners alone and says whom it left out and why."""
    c = cohorts.create_cohort(db, ANN, "Networking 101")
    staff.add_instructor(db, ANN, c.cohort_id, "bob")
    done = cohorts.enrol_subjects(db, ANN, c.cohort_id,
                                  parse_roster(b"subject\nlea\nann\nleo\nbob\nann\n"))
    assert done == cohorts.Enrolled(2, ("ann", "bob"))
    assert [m.subject for m in cohorts.members(db, ANN, c.cohort_id)] == ["lea", "leo"]
    again = cohorts.enrol_subjects(db, ANN, c.cohort_id, ["leo", "lia"])
    assert again == cohorts.Enrolled(1, (), already=1)  # leo was in: said, not lost


def test_an_lms_course_title_is_named_by_the_cohort_rules(db: Database) -> None:
    """Review CD: an LMS course's title went into the store as sent, past the rule every
    cohort name follows (no control character: PostgreSQL refuses a NUL, and every launch
    from that course failed there). Such characters become spaces; a title of nothing
    else names the course by its id."""
    def name_of(context_id: str, title: str) -> str:
        seated = lti_links.course_cohort(db, CourseSeat("moodle", "acme", context_id, title,
                                                        "lti.lea", False))
        with db.read() as sess:
            row = sess.get(Cohort, seated.cohort_id)
            assert row is not None
            return row.name

    assert name_of("c-1", "Net\x00work\u2028\u202e101\n") == "Net work 101"
    assert name_of("c-2", "\x00\x07 \n") == "LMS course c-2"
    assert name_of("c-3", "Réseaux 101 🛰️") == "Réseaux 101 🛰️"


def test_a_roster_names_every_bad_line_and_reads_common_exports() -> None:
    """Review CD: only the first bad line was named (ten typos, ten uploads), and a
    spreadsheet's export with a name column, or one separated by semicolons, was refused."""
    with pytest.raises(ForgeError) as exc:
        parse_roster(b"subject\nlea\nle o\nleo\nli a\n../x\n")
    assert exc.value.message.startswith('csv: line 3: "le o" is not an account id')
    assert "2 more bad lines (5, 6); nobody was enrolled" in exc.value.message
    assert [d["line"] for d in exc.value.details] == [3, 5, 6]
    many = b"subject\n" + b"".join(b"bad one %d\n" % i for i in range(30))
    with pytest.raises(ForgeError) as lots:
        parse_roster(many)
    assert len(lots.value.details) == 20 and "29 more bad lines" in lots.value.message
    assert lots.value.message.endswith(", …); nobody was enrolled")
    # An export with a header naming the learners' column: that column is read.
    assert parse_roster(b"Name,Email,Group\nLea L,lea@example.org,A\nLeo,leo@example.org,B\n"
                        ) == ["lea@example.org", "leo@example.org"]
    assert parse_roster(b"Name;Email\r\nLea;lea@example.org\r\n") == ["lea@example.org"]
    assert parse_roster(b"name\tsubject\nLea\tlea\n") == ["lea"]
    with pytest.raises(ForgeError) as short:
        parse_roster(b"Name,Email\nLea\n")
    assert short.value.details[0]["line"] == 2
    # Review CE: never a guess. An unquoted comma in a name shifts the learner's cell (it
    # enrolled "John"); an empty learner cell beside a name dropped the line silently.
    with pytest.raises(ForgeError) as shifted:
        parse_roster(b"name,email\nSmith, John,john@x.org\nBob,\nLea,lea@x.org\n")
    assert [d["line"] for d in shifted.value.details] == [2, 3]
    assert "more cells than the header's 2 columns" in shifted.value.message
    assert "no account id in column 2" in shifted.value.details[1]["problem"]
    with pytest.raises(ForgeError) as trailing:  # "email," then a second address
        parse_roster(b"email,\na@x.org,b@x.org\n")
    assert "more cells than the header's 1 column," in trailing.value.message
    assert parse_roster(b'name,email\n"Smith, John",john@x.org\n') == ["john@x.org"]
    with pytest.raises(ForgeError) as unnamed:  # several columns, none named: which one?
        parse_roster(b"Lea,lea\n")
    assert "expected one column" in unnamed.value.message


@pytest.mark.parametrize("header", ["Username", "E-mail", "Email Address", "ID", "user_id",
                                    "Student"])
def test_a_one_column_rosters_usual_header_is_not_enrolled(header: str) -> None:
    """An outside pass: a first line `Username` or `E-mail` was enrolled as a learner of
    that name, and the class read "Started x of 201"."""
    assert parse_roster(f"{header}\nlea@x.org\nleo@x.org\n".encode()) == ["lea@x.org",
                                                                          "leo@x.org"]


def test_a_roster_header_is_read_by_its_most_telling_column() -> None:
    assert parse_roster(b"Username,Email\nlea,lea@x.org\n") == ["lea@x.org"]
    assert parse_roster(b"Student ID,Name,Subject\n17,Lea,lea\n") == ["lea"]
    with pytest.raises(ForgeError, match="expected one column"):  # two of a rank: unsure
        parse_roster(b"Email,E-mail address\nlea@x.org,lea@y.org\n")


def test_one_learner_twice_in_other_letter_case_is_refused_naming_both_lines() -> None:
    """Account ids are case-sensitive: `stu002@uni.edu` and `STU002@UNI.EDU` became two
    learners, one of them a phantom that never starts."""
    with pytest.raises(ForgeError) as exc:
        parse_roster(b"email\nstu001@uni.edu\nstu002@uni.edu\nSTU002@UNI.EDU\n")
    assert exc.value.code == "csv_invalid"
    assert exc.value.details == [{"field": "file", "line": 4, "problem":
                                  '"STU002@UNI.EDU" is line 3\'s "stu002@uni.edu" in other '
                                  "letter case: account ids are case-sensitive, keep the one "
                                  "spelled like the learner's account"}]


def test_a_roster_naming_a_class_member_in_other_letter_case_enrols_nobody(
    db: Database
) -> None:
    """Lea joined by the invite link as `stu002@uni.edu`; the LMS export in capitals then
    enrolled `STU002@UNI.EDU` too (and `ANN`, the teacher), phantom learners `not started`
    all term. Now the file is refused whole, naming each, and resending it fixed works."""
    c = cohorts.create_cohort(db, ANN, "Networking 101")
    _, token = cohort_invites.make_invite(db, ANN, c.cohort_id)
    cohort_invites.join_by_invite(db, T1, "stu002@uni.edu", token)
    with pytest.raises(ForgeError) as exc:
        cohorts.enrol_subjects(db, ANN, c.cohort_id, parse_roster(
            b"Email\nSTU002@UNI.EDU\nstu003@uni.edu\nANN\n"))
    assert code(exc) == (422, "csv_invalid")
    assert str(exc.value).startswith(
        'csv: "STU002@UNI.EDU" is the class\'s learner "stu002@uni.edu" in other letter '
        "case: account ids are case-sensitive")
    assert str(exc.value).endswith("; 1 more like it; nobody was enrolled")
    assert [(d["subject"], d["problem"].split(" in other")[0]) for d in exc.value.details] == [
        ("STU002@UNI.EDU", '"STU002@UNI.EDU" is the class\'s learner "stu002@uni.edu"'),
        ("ANN", '"ANN" is the class\'s instructor "ann"')]
    assert [m.subject for m in cohorts.members(db, ANN, c.cohort_id)] == ["stu002@uni.edu"]
    done = cohorts.enrol_subjects(db, ANN, c.cohort_id, parse_roster(
        b"Email\nstu002@uni.edu\nstu003@uni.edu\nann\n"))
    assert done == cohorts.Enrolled(1, ("ann",), already=1)

    # The invite link checks letter case as the roster does: `STU003@UNI.EDU` (an SSO
    # spelling) opening it beside the enrolled `stu003@uni.edu` made a second learner,
    # as did `ANN` beside the teacher; refused, the other spelling not named to them.
    for joiner in ("STU003@UNI.EDU", "ANN"):
        with pytest.raises(ForgeError) as clash:
            cohort_invites.join_by_invite(db, T1, joiner, token)
        assert code(clash) == (409, "cohort_case_clash")
        assert str(clash.value).startswith(f'invite: this class already lists "{joiner}" '
                                           "in other letter case")
        assert "stu003@uni.edu" not in str(clash.value)
    assert cohort_invites.join_by_invite(db, T1, "stu003@uni.edu", token)  # itself: fine
    assert [m.subject for m in cohorts.members(db, ANN, c.cohort_id)] == [
        "stu002@uni.edu", "stu003@uni.edu"]
    # A per-learner change naming a learner in other letter case says which one is meant.
    made = asg.create_assignment(db, ANN, c.cohort_id, template_id="netplus",
                                 opens_at=datetime.now(UTC), closes_at=datetime.now(UTC)
                                 + timedelta(days=1), attempts_allowed=1, hints_allowed=True,
                                 known_templates={"netplus"})
    with pytest.raises(ForgeError) as typo:
        class_changes.unenrol(db, ANN, c.cohort_id, "Stu002@uni.edu")
    assert code(typo) == (404, "learner_not_found")
    assert str(typo.value) == ('subject: no such learner in this cohort; its learner '
                               '"stu002@uni.edu" differs only in letter case (account ids '
                               "are case-sensitive)")
    with pytest.raises(ForgeError) as typo:
        attempt_grants.grant_attempts(db, ANN, c.cohort_id, made.assignment_id, "nobody", 1,
                                      "crash")
    assert str(typo.value) == "subject: no such learner in this cohort"


def test_an_unclosed_quote_is_a_bad_line_not_a_learner() -> None:
    with pytest.raises(ForgeError) as exc:
        parse_roster(b'lea\n"unterminated\n')
    assert exc.value.details[0]["line"] == 2
    assert "an unclosed quote" in exc.value.message


def test_an_unknown_lab_is_refused_naming_the_labs(db: Database) -> None:
    """The refusal names the labs rather than sending the instructor to GET /v1/tracks,
    which answers 403 `entitlement_not_found` to an instructor whose tenant has no plan."""
    c = cohorts.create_cohort(db, ANN, "Networking 101")
    now = datetime.now(UTC)
    with pytest.raises(ForgeError) as exc:
        asg.create_assignment(db, ANN, c.cohort_id, template_id="netplsu",
                              opens_at=now, closes_at=now + timedelta(days=1),
                              attempts_allowed=1, hints_allowed=False,
                              known_templates={"netplus", "ccna"})
    assert code(exc) == (422, "validation_error")
    assert exc.value.message == "template_id: not a lab of this platform; its labs: ccna, netplus"
    assert exc.value.details[0]["field"] == "template_id"
    assert exc.value.details[0]["allowed"] == ["ccna", "netplus"]
    assert "/v1/tracks" not in exc.value.message
    assert asg.cohort_assignments(db, ANN, c.cohort_id) == []
