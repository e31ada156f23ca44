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
#            plan alone decides, as before cohorts existed. Judged with forge.assignment's
#            rules (assignment.rego), in the same evaluation (forge.gates.admit).
# Logic is in functions of the input (`reasons(doc)`, `allowed(doc)`) so tests need no `with`;
# `allow` is read off the positive checks alone; the reasons are worded only for a deny, over
# `current` (the fields the gate reads, null when missing).
package forge.spawn

import rego.v1

import data.forge.assignment

# The tables are data, in data.json (rego-cpp builds a constant object again on every
# query that reads it; a data document is loaded once): the known tracks at
# data.forge.tables.tracks (an object whose values are true), the characters a request id
# may hold and the quota fields at data.forge.tables.spawn.

default allow := false

# The fields the gate reads (`current`, in the input's own shape, so the functions below
# read it as they read the input, without the rest of a larger document such as
# forge.gates' template), read only to word the reasons of a deny.
current := {
	"request": {
		"request_id": object.get(input, ["request", "request_id"], null),
		"track": object.get(input, ["request", "track"], null),
	},
	"subject": object.get(input, "subject", null),
	"tenant": object.get(input, "tenant", null),
	"plan": {
		"name": object.get(input, ["plan", "name"], null),
		"tracks": object.get(input, ["plan", "tracks"], []),
	},
	"quota": object.get(input, "quota", {}),
	"assignment": object.get(input, "assignment", null),
}

allow if {
	admissible(input)
	quotas_ok(input)
	assignment.window_ok(object.get(input, "assignment", null))
}

deny_reasons := set() if allow

deny_reasons := reasons(current) if not allow

# The spawn gate without its quotas, for spawn_service's one admission query
# (forge.gates.admit): the store's limiter enforces quotas atomically when it reserves the
# slot, which a decision made before the reservation cannot. The assignment window and
# attempts are judged here, in the same evaluation. Reasons only for a deny, as above.
default admission_allow := false

admission_allow if {
	admissible(input)
	assignment.window_ok(object.get(input, "assignment", null))
}

admission_reasons := set() if admission_allow

admission_reasons := request_reasons(current) | assignment.window_reasons(current) if not admission_allow

show(x) := x if is_string(x)

show(x) := sprintf("%v", [x]) if not is_string(x)

quoted(x) := concat("", ["\"", show(x), "\""])

track_of(doc) := object.get(doc, ["request", "track"], null)

non_empty_string(s) if {
	is_string(s)
	count(s) > 0
}

known_track(doc) if {
	t := track_of(doc)
	data.forge.tables.tracks[t]
}

valid_request_id(doc) if request_id_ok(object.get(doc, ["request", "request_id"], null))

# 8-64 characters, each one of request_id_chars: what `^[A-Za-z0-9._-]{8,64}$` matches,
# without a regex (trim drops every allowed character, so only an id made of them alone
# trims to ""; the length is then counted in ASCII characters).
request_id_ok(rid) if {
	is_string(rid)
	trim(rid, data.forge.tables.spawn.request_id_chars) == ""
	n := count(rid)
	n >= 8
	n <= 64
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

# Every positive check, straight on the document's fields (a missing field fails a check).
# A reason that fails to render can never turn a deny into an allow: allow needs these
# checks, never the reasons. Every reason contradicts one of them, so an allowed document
# has none (tests/policy/test_corpus.py checks it on every recorded and generated document).
admissible(doc) if {
	request_id_ok(doc.request.request_id)
	track := doc.request.track
	data.forge.tables.tracks[track]
	tracks := doc.plan.tracks
	is_array(tracks)
	track in tracks
	non_empty_string(doc.subject)
	non_empty_string(doc.tenant)
}

quotas_ok(doc) if {
	q := quota_doc(doc)
	quota_numbers_ok_of(q)
	q.concurrent.used < q.concurrent.limit
	q.rate.used < q.rate.limit_per_minute
}

# For the unit tests: the same answers as `allow` and `deny_reasons` for a document.
allowed(doc) if {
	admissible(doc)
	quotas_ok(doc)
	assignment.window_ok(object.get(doc, "assignment", null))
	count(reasons(doc)) == 0
}

reasons(doc) := (request_reasons(doc) | quota_reasons(doc)) | assignment.window_reasons(doc)

request_reasons(doc) := {"request.request_id must be 8-64 characters of [A-Za-z0-9._-]" |
	not valid_request_id(doc)
} | {m |
	not known_track(doc)
	m := concat("", ["unknown track ", quoted(track_of(doc)), " (known: ", concat(", ", sort({t | data.forge.tables.tracks[t]})), ")"])
} | {m |
	known_track(doc)
	not track_in_plan(doc)
	m := concat("", ["plan ", show(object.get(doc, ["plan", "name"], null)), " does not include track ", quoted(track_of(doc))])
} | {m |
	some field in ["subject", "tenant"]
	not non_empty_string(object.get(doc, field, null))
	m := concat("", [field, " must be a non-empty string"])
}

quota_reasons(doc) := quota_reasons_of(quota_doc(doc))

# The quota object (or {} when absent or not an object), read once per decision.
quota_doc(doc) := q if {
	q := object.get(doc, "quota", {})
	is_object(q)
}

quota_doc(doc) := {} if not is_object(object.get(doc, "quota", {}))

quota_reasons_of(q) := {m |
	some field in data.forge.tables.spawn.quota_fields
	not number_ok(object.get(q, field, null))
	m := concat("", ["quota.", field[0], ".", field[1], " must be a non-negative number"])
} | {m |
	quota_numbers_ok_of(q)
	q.concurrent.used >= q.concurrent.limit
	m := concat("", ["concurrent scenario quota reached (", show(q.concurrent.used), " of ", show(q.concurrent.limit), " in use)"])
} | {m |
	quota_numbers_ok_of(q)
	q.rate.used >= q.rate.limit_per_minute
	m := concat("", ["spawn rate limit reached (", show(q.rate.used), " of ", show(q.rate.limit_per_minute), " per minute)"])
}

quota_numbers_ok_of(q) if {
	every field in data.forge.tables.spawn.quota_fields {
		number_ok(object.get(q, field, null))
	}
}
