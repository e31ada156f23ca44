# Spawn gate: is a spawn request well formed and within its quotas?
#
# Input (built by forge.policy.build_spawn_input):
#   request: {request_id, track}
#   subject, tenant: non-empty strings (from a verified credential)
#   plan:    {name, tracks: [string]}
#   quota:   {concurrent: {limit, used}, rate: {limit_per_minute, used}}
#            "used" counts what is already active / spent, not this request.
#   assignment (optional; only when the lab is assigned to one of the learner's cohorts):
#            {id, now_s, opens_at, opens_at_s, closes_at, closes_at_s,
#             attempts: {allowed, used}, hints_allowed}
#            times as Unix seconds (*_s) and as RFC 3339 text for the reasons. Absent: the
#            plan alone decides, as before cohorts existed. Judged by forge.assignment
#            (assignment.rego), which spawn_service also asks on its own before reserving.
# Logic is in functions of the input (`reasons(doc)`, `allowed(doc)`) so tests need no `with`.
package forge.spawn

import rego.v1

import data.forge.assignment

known_tracks := {"netplus", "ccna", "cissp"}

request_id_pattern := `^[A-Za-z0-9._-]{8,64}$`

quota_fields := [["concurrent", "limit"], ["concurrent", "used"], ["rate", "limit_per_minute"], ["rate", "used"]]

default allow := false

allow if allowed(input)

deny_reasons := reasons(input)

show(x) := x if is_string(x)

show(x) := sprintf("%v", [x]) if not is_string(x)

quoted(x) := concat("", ["\"", show(x), "\""])

track_of(doc) := object.get(doc, ["request", "track"], null)

quota(doc, field) := object.get(doc, array.concat(["quota"], field), null)

non_empty_string(s) if {
	is_string(s)
	count(s) > 0
}

known_track(doc) if {
	t := track_of(doc)
	known_tracks[t]
}

valid_request_id(doc) if {
	rid := object.get(doc, ["request", "request_id"], null)
	is_string(rid)
	regex.match(request_id_pattern, rid)
}

track_in_plan(doc) if {
	known_track(doc)
	tracks := object.get(doc, ["plan", "tracks"], [])
	is_array(tracks)
	track_of(doc) in tracks
}

number_ok(n) if {
	is_number(n)
	n >= 0
}

quota_numbers_ok(doc) if {
	every field in quota_fields {
		number_ok(quota(doc, field))
	}
}

under(doc, group, limit_key) if {
	quota_numbers_ok(doc)
	quota(doc, [group, "used"]) < quota(doc, [group, limit_key])
}

allowed(doc) if {
	valid_request_id(doc)
	track_in_plan(doc)
	non_empty_string(object.get(doc, "subject", null))
	non_empty_string(object.get(doc, "tenant", null))
	under(doc, "concurrent", "limit")
	under(doc, "rate", "limit_per_minute")
	count(reasons(doc)) == 0
}

reasons(doc) := {"request.request_id must be 8-64 characters of [A-Za-z0-9._-]" |
	not valid_request_id(doc)
} | {m |
	not known_track(doc)
	m := concat("", ["unknown track ", quoted(track_of(doc)), " (known: ", concat(", ", sort(known_tracks)), ")"])
} | {m |
	known_track(doc)
	not track_in_plan(doc)
	m := concat("", ["plan ", show(object.get(doc, ["plan", "name"], null)), " does not include track ", quoted(track_of(doc))])
} | {m |
	some field in ["subject", "tenant"]
	not non_empty_string(object.get(doc, field, null))
	m := concat("", [field, " must be a non-empty string"])
} | {m |
	some field in quota_fields
	not number_ok(quota(doc, field))
	m := concat("", ["quota.", field[0], ".", field[1], " must be a non-negative number"])
} | {m |
	quota_numbers_ok(doc)
	not under(doc, "concurrent", "limit")
	m := concat("", ["concurrent scenario quota reached (", show(quota(doc, ["concurrent", "used"])), " of ", show(quota(doc, ["concurrent", "limit"])), " in use)"])
} | assignment.window_reasons(doc) | {m |
	quota_numbers_ok(doc)
	not under(doc, "rate", "limit_per_minute")
	m := concat("", ["spawn rate limit reached (", show(quota(doc, ["rate", "used"])), " of ", show(quota(doc, ["rate", "limit_per_minute"])), " per minute)"])
}
