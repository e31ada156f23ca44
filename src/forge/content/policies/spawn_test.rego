# Unit tests for forge.spawn (functions on fixture documents; no `with`).
package forge.spawn_test

import rego.v1

import data.forge.spawn

good := {
	"request": {"request_id": "req-000001", "track": "ccna"},
	"subject": "alice",
	"tenant": "acme",
	"plan": {"name": "PRO", "tracks": ["netplus", "ccna"]},
	"quota": {"concurrent": {"used": 0, "limit": 3}, "rate": {"used": 0, "limit_per_minute": 10}},
}

with_quota(cu, cl, ru, rl) := object.union(good, {"quota": {"concurrent": {"used": cu, "limit": cl}, "rate": {"used": ru, "limit_per_minute": rl}}})

test_well_formed_request_allowed if {
	spawn.allowed(good)
	count(spawn.reasons(good)) == 0
}

test_last_free_slot_allowed if {
	spawn.allowed(with_quota(2, 3, 9, 10))
}

test_concurrency_quota_reached if {
	doc := with_quota(3, 3, 0, 10)
	not spawn.allowed(doc)
	spawn.reasons(doc)["concurrent scenario quota reached (3 of 3 in use)"]
}

test_rate_limit_reached if {
	doc := with_quota(0, 3, 10, 10)
	not spawn.allowed(doc)
	spawn.reasons(doc)["spawn rate limit reached (10 of 10 per minute)"]
}

test_missing_quota_numbers_denied if {
	doc := object.union(good, {"quota": {"concurrent": {"limit": 3}}})
	not spawn.allowed(doc)
	spawn.reasons(doc)["quota.concurrent.used must be a non-negative number"]
	spawn.reasons(doc)["quota.rate.limit_per_minute must be a non-negative number"]
}

test_bad_request_id_denied if {
	doc := object.union(good, {"request": {"request_id": "../x", "track": "ccna"}})
	not spawn.allowed(doc)
	spawn.reasons(doc)["request.request_id must be 8-64 characters of [A-Za-z0-9._-]"]
}

test_track_outside_plan_denied if {
	doc := object.union(good, {"request": {"request_id": "req-000001", "track": "cissp"}})
	not spawn.allowed(doc)
	spawn.reasons(doc)["plan PRO does not include track \"cissp\""]
}

test_anonymous_denied if {
	doc := object.union(good, {"subject": ""})
	not spawn.allowed(doc)
	spawn.reasons(doc)["subject must be a non-empty string"]
}

# Assignments (issue 18 item 2): forge.spawn refuses what forge.assignment refuses.
assigned(now, used) := object.union(good, {"assignment": {
	"id": "asg-1", "now_s": now, "opens_at": "2026-12-01T09:00:00Z", "opens_at_s": 1000,
	"closes_at": "2026-12-01T10:00:00Z", "closes_at_s": 2000,
	"attempts": {"allowed": 2, "used": used}, "hints_allowed": true,
}})

test_assignment_inside_window_allowed if {
	spawn.allowed(assigned(1500, 0))
}

test_assignment_outside_window_or_attempts_denied if {
	not spawn.allowed(assigned(999, 0))
	spawn.reasons(assigned(999, 0))["assignment asg-1 opens at 2026-12-01T09:00:00Z"]
	not spawn.allowed(assigned(2000, 0))
	not spawn.allowed(assigned(1500, 2))
}

# Fail closed (reviewer finding): an assignment whose window is closed but which lacks its
# display fields (id, opens_at, closes_at) is refused, not admitted.
test_closed_window_without_id_denied if {
	doc := object.union(good, {"assignment": {"now_s": 200, "opens_at_s": 0, "closes_at_s": 100, "attempts": {"allowed": 3, "used": 0}}})
	not spawn.allowed(doc)
}
