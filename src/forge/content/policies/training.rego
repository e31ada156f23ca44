# Training gate: may this template run for this plan and the authorised track?
#
# Input (built by forge.policy.build_training_input):
#   template: {name, sha256, track, tier,
#              limits: {cpu, memory_mb, pids, attacker_max_exploits, timeout_minutes},
#              network: {egress: "deny"|"allowlist", allowlist_profile: string|null},
#              containers: [{name, image, read_only, router, capabilities: [string]}]}
#   request:  {track, template}        what the SAT authorises
#   plan:     {name, tracks: [string]} from the verified ET
#
# `allow` is read off the positive checks (`passes`) alone; the reasons are worded only for
# a deny (`deny_reasons`, over the view of the input with null for anything missing), as
# every reason contradicts a check (tests/policy/test_allow_from_checks.py). Unit tests
# call the same logic as functions of a document (`reasons(doc)`, `allowed(doc)`) instead
# of mocking input with `with` (unreliable in regopy 1.5). Messages are built with concat,
# and `allow` needs every positive check, so a reason that fails to render can never turn
# a deny into an allow.
package forge.training

import rego.v1

# The tables (tracks, per-plan ceilings, per-tier exploit limits, approved egress
# profiles, the limits every plan caps) are data, in data.json at
# data.forge.tables.training (and data.forge.tables.tracks): rego-cpp builds a constant
# object again on every query that reads it, a data document is loaded once. Plan names
# are matched case-insensitively (upper-cased). Sets are objects whose values are true.

default allow := false

# The view of the input (null for anything missing), built only to word a deny's reasons.
current := view(input)

allow if passes(input)

deny_reasons := set() if allow

deny_reasons := reasons_of(current) if not allow

show(x) := x if is_string(x)

show(x) := sprintf("%v", [x]) if not is_string(x)

quoted(x) := concat("", ["\"", show(x), "\""])

listing(s) := concat(", ", sort(s))

# The members of a table set (an object whose values are true).
keys(set_table) := {k | set_table[k]}

# The fields the gate reads, with null for anything missing, and the plan they name
# (`p`: its ceilings, or null for an unknown plan), built once per document.
view(doc) := {
	"name": object.get(doc, ["template", "name"], null),
	"track": object.get(doc, ["template", "track"], null),
	"tier": object.get(doc, ["template", "tier"], null),
	"limits": object.get(doc, ["template", "limits"], {}),
	"egress": object.get(doc, ["template", "network", "egress"], null),
	"profile": object.get(doc, ["template", "network", "allowlist_profile"], null),
	"req_track": object.get(doc, ["request", "track"], null),
	"req_template": object.get(doc, ["request", "template"], null),
	"plan": object.get(doc, ["plan", "name"], null),
	"plan_tracks": object.get(doc, ["plan", "tracks"], []),
	"p": plan_entry(object.get(doc, ["plan", "name"], null)),
}

plan_entry(x) := object.get(data.forge.tables.training.plans, upper(x), null) if is_string(x)

plan_entry(x) := null if not is_string(x)

# Every positive check, straight on the document's fields (a missing field leaves a check
# undefined, so it fails: no defaults are needed on the way to an allow, and the view of
# the document is built only to word the reasons of a deny). A reason that fails to render
# can never turn a deny into an allow: allow needs these checks, never the reasons. Every
# reason below contradicts one of these checks, so an allowed document has none
# (tests/policy/test_corpus.py checks it on every recorded and generated document).
passes(doc) if {
	t := doc.template
	track := t.track
	data.forge.tables.tracks[track]
	doc.request.track == track
	name := t.name
	is_string(name)
	doc.request.template == name
	plan := doc.plan.name
	is_string(plan)
	p := data.forge.tables.training.plans[upper(plan)]
	tracks := doc.plan.tracks
	is_array(tracks)
	track in tracks
	tier := t.tier
	p.tiers[tier]
	egress_ok(t.network)
	limits := t.limits
	n := limits.attacker_max_exploits
	is_number(n)
	n >= 0
	n <= data.forge.tables.training.tier_max_exploits[tier]
	n <= p.max_exploits
	every key in data.forge.tables.training.limit_keys {
		x := limits[key]
		is_number(x)
		x > 0
		x <= p[key]
	}
}

egress_ok(net) if net.egress == "deny"

egress_ok(net) if {
	net.egress == "allowlist"
	data.forge.tables.training.approved_profiles[net.allowlist_profile]
}

# For the unit tests: the same answers as `allow` and `deny_reasons` for a document.
allowed(doc) if passes(doc)

reasons(doc) := reasons_of(view(doc))

# One function over the view (a call with the view costs as much as a check).
reasons_of(v) := {m |
	not data.forge.tables.tracks[v.track]
	m := concat("", ["unknown track ", quoted(v.track), " (known: ", listing(keys(data.forge.tables.tracks)), ")"])
} | {m |
	data.forge.tables.tracks[v.track]
	v.req_track != v.track
	m := concat("", ["template ", quoted(v.name), " is for track ", quoted(v.track), ", but track ", quoted(v.req_track), " was requested"])
} | {m |
	v.req_template != v.name
	m := concat("", ["template ", quoted(v.name), " is not the authorised template ", quoted(v.req_template)])
} | {m |
	v.p == null
	m := concat("", ["unknown plan ", quoted(v.plan)])
} | {m |
	v.p != null
	data.forge.tables.tracks[v.track]
	not v.track in v.plan_tracks
	m := concat("", ["plan ", upper(v.plan), " does not include track ", quoted(v.track)])
} | {m |
	not data.forge.tables.training.tier_max_exploits[v.tier]
	m := concat("", ["unknown tier ", quoted(v.tier), " (known: ", listing({t | data.forge.tables.training.tier_max_exploits[t]}), ")"])
} | {m |
	v.p != null
	data.forge.tables.training.tier_max_exploits[v.tier]
	not v.p.tiers[v.tier]
	m := concat("", ["tier ", quoted(v.tier), " is not allowed on plan ", upper(v.plan), " (allowed: ", listing(keys(v.p.tiers)), ")"])
} | {m |
	not v.egress in {"deny", "allowlist"}
	m := concat("", ["egress must be \"deny\" or \"allowlist\", got ", quoted(v.egress)])
} | {m |
	v.egress == "allowlist"
	not data.forge.tables.training.approved_profiles[v.profile]
	m := concat("", ["egress allowlist profile ", quoted(v.profile), " is not approved (approved: ", listing(keys(data.forge.tables.training.approved_profiles)), ")"])
} | {m |
	some key in array.concat(data.forge.tables.training.limit_keys, ["attacker_max_exploits"])
	not is_number(v.limits[key])
	m := concat("", ["limits.", key, " is missing or not a number"])
} | {m |
	v.p != null
	some key in data.forge.tables.training.limit_keys
	is_number(v.limits[key])
	v.limits[key] > v.p[key]
	m := concat("", ["limits.", key, " ", show(v.limits[key]), " exceeds the ", upper(v.plan), " plan cap of ", show(v.p[key])])
} | {m |
	n := v.limits.attacker_max_exploits
	is_number(n)
	n > data.forge.tables.training.tier_max_exploits[v.tier]
	m := concat("", ["limits.attacker_max_exploits ", show(n), " exceeds the ", v.tier, " tier limit of ", show(data.forge.tables.training.tier_max_exploits[v.tier])])
} | {m |
	n := v.limits.attacker_max_exploits
	v.p != null
	is_number(n)
	n > v.p.max_exploits
	m := concat("", ["limits.attacker_max_exploits ", show(n), " exceeds the ", upper(v.plan), " plan limit of ", show(v.p.max_exploits)])
}
