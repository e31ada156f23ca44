# Unit tests for forge.assignment (functions on fixture documents; no `with`).
package forge.assignment_test

import rego.v1

import data.forge.assignment

window(now, used, allowed, hints) := {"assignment": {
	"id": "asg-1", "now_s": now, "opens_at": "2026-12-01T09:00:00Z", "opens_at_s": 1000,
	"closes_at": "2026-12-01T10:00:00Z", "closes_at_s": 2000,
	"attempts": {"allowed": allowed, "used": used}, "hints_allowed": hints,
}}

test_assignment_inside_window_allowed if {
	doc := window(1500, 0, 2, true)
	assignment.refusals(doc) == set()
	count(assignment.window_reasons(doc)) == 0
	count(assignment.hint_reasons(doc)) == 0
}

test_assignment_before_opening_denied_with_when if {
	doc := window(999, 0, 2, true)
	count(assignment.refusals(doc)) > 0
	assignment.window_reasons(doc) == {"assignment asg-1 opens at 2026-12-01T09:00:00Z"}
}

test_assignment_opens_at_its_opening_second if {
	count(assignment.window_reasons(window(1000, 0, 2, true))) == 0
}

test_assignment_after_closing_denied if {
	doc := window(2000, 0, 2, true)
	count(assignment.refusals(doc)) > 0
	assignment.window_reasons(doc) == {"assignment asg-1 closed at 2026-12-01T10:00:00Z"}
}

test_assignment_attempts_exhausted_denied if {
	doc := window(1500, 2, 2, true)
	count(assignment.refusals(doc)) > 0
	assignment.window_reasons(doc) == {"all 2 attempts of assignment asg-1 are used"}
}

test_assignment_malformed_numbers_denied if {
	doc := {"assignment": {"id": "asg-1", "now_s": "soon"}}
	count(assignment.refusals(doc)) > 0
	assignment.window_reasons(doc)["assignment.now_s must be a non-negative number"]
	assignment.window_reasons(doc)["assignment.attempts.used must be a non-negative number"]
}

test_assignment_hints_refused_when_not_allowed if {
	assignment.hint_reasons(window(1500, 0, 2, false)) == {"hints are not allowed in assignment asg-1"}
}

test_no_assignment_plan_alone_decides if {
	count(assignment.window_reasons({})) == 0
	count(assignment.hint_reasons({})) == 0
	count(assignment.refusals({})) == 0
}

test_hint_reveal_action_judges_hints_only if {
	doc := object.union(window(2500, 2, 2, false), {"action": "reveal_hint"})
	assignment.refusals(doc) == {"hints are not allowed in assignment asg-1"}
	count(assignment.refusals(object.union(window(2500, 2, 2, true), {"action": "reveal_hint"}))) == 0
}

test_unknown_action_denied if {
	assignment.refusals({"action": "grade"}) == {"action must be spawn or reveal_hint"}
}

# Fail closed (reviewer finding): a closed window without its display fields still denies;
# only a well-formed, open window with attempts left passes the positive check.
no_id := {"now_s": 200, "opens_at_s": 0, "closes_at_s": 100, "attempts": {"allowed": 3, "used": 0}}

test_assignment_without_display_fields_still_denied if {
	not assignment.window_ok(no_id)
	assignment.window_reasons({"assignment": no_id}) == {"assignment ? closed at ?"}
}

test_assignment_window_ok_only_when_open_and_well_formed if {
	assignment.window_ok(null)
	assignment.window_ok(window(1500, 0, 2, true).assignment)
	not assignment.window_ok(window(999, 0, 2, true).assignment)
	not assignment.window_ok(window(1500, 2, 2, true).assignment)
	not assignment.window_ok("asg-1")
	not assignment.window_ok(object.remove(no_id, ["now_s"]))
}
