# Assignment gate (issue 18 item 2): a lab assigned to one of the learner's cohorts may be
# started only inside its window and while attempts remain, and its hints revealed only
# when the assignment allows them. Part of the spawn gate: forge.spawn adds
# `window_reasons` to its own reasons, and spawn_service asks forge.gates.admit (the spawn
# gate with the assignment, one query) before reserving anything; it asks this package
# before a hint is revealed (action "reveal_hint").
#
# Input (built by forge.policy.build_assignment_input):
#   action:     "spawn" (default) or "reveal_hint"
#   assignment: absent when the lab is assigned to none of the learner's cohorts (then
#               the plan alone decides), else
#               {id, now_s, opens_at, opens_at_s, closes_at, closes_at_s,
#                attempts: {allowed, used}, hints_allowed}
#               times as Unix seconds (*_s) and as RFC 3339 text for the reasons.
package forge.assignment

import rego.v1

default allow := false

# Computed once per query: the refusals, and allow from them plus a positive check of
# the action's own conditions (a reason that fails to render never turns into an allow).
deny_reasons := refusals(input)

allow if {
	action_of(input) == "spawn"
	window_ok(assignment_of(input))
	count(deny_reasons) == 0
}

allow if {
	action_of(input) == "reveal_hint"
	count(deny_reasons) == 0
}

# Positive window check: no assignment, or a well-formed one (each of `number_fields` a
# non-negative number, so `malformed` is empty) whose window is open and whose attempts
# remain. Required by every allow that judges a window (here and in
# forge.spawn), so a missing field can only deny.
window_ok(a) if a == null

window_ok(a) if {
	is_object(a)
	now := a.now_s
	count_ok(now)
	opens := a.opens_at_s
	count_ok(opens)
	closes := a.closes_at_s
	count_ok(closes)
	allowed := a.attempts.allowed
	count_ok(allowed)
	used := a.attempts.used
	count_ok(used)
	opens <= now
	now < closes
	used < allowed
}


action_of(doc) := object.get(doc, "action", "spawn")

refusals(doc) := window_reasons(doc) if action_of(doc) == "spawn"

refusals(doc) := hint_reasons(doc) if action_of(doc) == "reveal_hint"

# The actions (data.forge.tables.assignment.actions, an object whose values are true) and
# the number fields are data, in data.json, loaded once rather than built on each query.
refusals(doc) := {"action must be spawn or reveal_hint"} if not data.forge.tables.assignment.actions[action_of(doc)]

text(x) := x if is_string(x)

text(x) := sprintf("%v", [x]) if not is_string(x)

# A display field of the assignment, "?" when absent, so a reason always renders.
label(a, field) := text(object.get(a, field, "?"))

count_ok(n) if {
	is_number(n)
	n >= 0
}

assignment_of(doc) := object.get(doc, "assignment", null)

# The window's reasons, each part computed once: a malformed assignment gives only its
# malformed fields; a well-formed one is judged on its window and attempts.
window_reasons(doc) := window_reasons_of(assignment_of(doc))

window_reasons_of(a) := set() if a == null

window_reasons_of(a) := {"assignment must be an object"} if {
	a != null
	not is_object(a)
}

window_reasons_of(a) := bad | timing_reasons(a, count(bad) == 0) if {
	is_object(a)
	bad := malformed(a)
}

malformed(a) := {m |
	some field in data.forge.tables.assignment.number_fields
	not count_ok(object.get(a, field, null))
	m := concat("", ["assignment.", concat(".", field), " must be a non-negative number"])
}

timing_reasons(_, false) := set()

timing_reasons(a, true) := {m |
	a.now_s < a.opens_at_s
	m := concat("", ["assignment ", label(a, "id"), " opens at ", label(a, "opens_at")])
} | {m |
	a.now_s >= a.closes_at_s
	m := concat("", ["assignment ", label(a, "id"), " closed at ", label(a, "closes_at")])
} | {m |
	a.attempts.used >= a.attempts.allowed
	m := concat("", ["all ", text(a.attempts.allowed), " attempts of assignment ", label(a, "id"), " are used"])
}

hint_reasons(doc) := {m |
	a := assignment_of(doc)
	a != null
	object.get(a, "hints_allowed", false) != true
	m := concat("", ["hints are not allowed in assignment ", label(a, "id")])
}
