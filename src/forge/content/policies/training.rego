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
# The logic lives in functions of the input document (`reasons(doc)`, `allowed(doc)`), so
# unit tests call them directly instead of mocking input with `with` (unreliable in
# regopy 1.5). Messages are built with concat, and `allowed` needs every positive check,
# so a reason that fails to render can never turn a deny into an allow.
package forge.training

import rego.v1

known_tracks := {"netplus", "ccna", "cissp"}

# Per-plan ceilings; plan names are matched case-insensitively.
plans := {
	"FREE": {"tiers": {"foundation"}, "max_exploits": 5, "cpu": 1, "memory_mb": 1024, "pids": 256, "timeout_minutes": 60},
	"PRO": {"tiers": {"foundation", "intermediate"}, "max_exploits": 10, "cpu": 2, "memory_mb": 2048, "pids": 512, "timeout_minutes": 120},
	"TEAM": {"tiers": {"foundation", "intermediate", "advanced"}, "max_exploits": 25, "cpu": 2, "memory_mb": 4096, "pids": 1024, "timeout_minutes": 240},
	"ENTERPRISE": {"tiers": {"foundation", "intermediate", "advanced"}, "max_exploits": 100, "cpu": 4, "memory_mb": 8192, "pids": 4096, "timeout_minutes": 480},
}

tier_max_exploits := {"foundation": 5, "intermediate": 20, "advanced": 100}

# Egress allowlist profiles an operator has reviewed.
approved_profiles := {"package-mirrors"}

limit_keys := ["cpu", "memory_mb", "pids", "timeout_minutes"]

default allow := false

allow if allowed(input)

deny_reasons := reasons(input)

show(x) := x if is_string(x)

show(x) := sprintf("%v", [x]) if not is_string(x)

quoted(x) := concat("", ["\"", show(x), "\""])

listing(s) := concat(", ", sort(s))

# The fields the gate reads, with null for anything missing.
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
}

plan_of(v) := plans[upper(v.plan)] if is_string(v.plan)

limit_ok(v, key) if {
	is_number(v.limits[key])
	v.limits[key] > 0
	v.limits[key] <= plan_of(v)[key]
}

exploits_ok(v) if {
	n := v.limits.attacker_max_exploits
	is_number(n)
	n >= 0
	n <= tier_max_exploits[v.tier]
	n <= plan_of(v).max_exploits
}

egress_ok(v) if v.egress == "deny"

egress_ok(v) if {
	v.egress == "allowlist"
	approved_profiles[v.profile]
}

allowed(doc) if {
	v := view(doc)
	known_tracks[v.track]
	v.req_track == v.track
	is_string(v.name)
	v.req_template == v.name
	p := plan_of(v)
	is_array(v.plan_tracks)
	v.track in v.plan_tracks
	p.tiers[v.tier]
	egress_ok(v)
	exploits_ok(v)
	every key in limit_keys {
		limit_ok(v, key)
	}
	count(reasons(doc)) == 0
}

reasons(doc) := union({
	track_reasons(view(doc)),
	plan_reasons(view(doc)),
	egress_reasons(view(doc)),
	limit_reasons(view(doc)),
})

track_reasons(v) := {m |
	not known_tracks[v.track]
	m := concat("", ["unknown track ", quoted(v.track), " (known: ", listing(known_tracks), ")"])
} | {m |
	known_tracks[v.track]
	v.req_track != v.track
	m := concat("", ["template ", quoted(v.name), " is for track ", quoted(v.track), ", but track ", quoted(v.req_track), " was requested"])
} | {m |
	v.req_template != v.name
	m := concat("", ["template ", quoted(v.name), " is not the authorised template ", quoted(v.req_template)])
}

plan_reasons(v) := {m |
	not plan_of(v)
	m := concat("", ["unknown plan ", quoted(v.plan)])
} | {m |
	p := plan_of(v)
	known_tracks[v.track]
	not v.track in v.plan_tracks
	m := concat("", ["plan ", upper(v.plan), " does not include track ", quoted(v.track)])
} | {m |
	not tier_max_exploits[v.tier]
	m := concat("", ["unknown tier ", quoted(v.tier), " (known: ", listing({t | tier_max_exploits[t]}), ")"])
} | {m |
	p := plan_of(v)
	tier_max_exploits[v.tier]
	not p.tiers[v.tier]
	m := concat("", ["tier ", quoted(v.tier), " is not allowed on plan ", upper(v.plan), " (allowed: ", listing(p.tiers), ")"])
}

egress_reasons(v) := {m |
	not v.egress in {"deny", "allowlist"}
	m := concat("", ["egress must be \"deny\" or \"allowlist\", got ", quoted(v.egress)])
} | {m |
	v.egress == "allowlist"
	not approved_profiles[v.profile]
	m := concat("", ["egress allowlist profile ", quoted(v.profile), " is not approved (approved: ", listing(approved_profiles), ")"])
}

limit_reasons(v) := {m |
	some key in array.concat(limit_keys, ["attacker_max_exploits"])
	not is_number(v.limits[key])
	m := concat("", ["limits.", key, " is missing or not a number"])
} | {m |
	some key in limit_keys
	p := plan_of(v)
	is_number(v.limits[key])
	v.limits[key] > p[key]
	m := concat("", ["limits.", key, " ", show(v.limits[key]), " exceeds the ", upper(v.plan), " plan cap of ", show(p[key])])
} | {m |
	n := v.limits.attacker_max_exploits
	is_number(n)
	n > tier_max_exploits[v.tier]
	m := concat("", ["limits.attacker_max_exploits ", show(n), " exceeds the ", v.tier, " tier limit of ", show(tier_max_exploits[v.tier])])
} | {m |
	n := v.limits.attacker_max_exploits
	p := plan_of(v)
	is_number(n)
	n > p.max_exploits
	m := concat("", ["limits.attacker_max_exploits ", show(n), " exceeds the ", upper(v.plan), " plan limit of ", show(p.max_exploits)])
}
