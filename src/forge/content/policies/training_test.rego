# Unit tests for forge.training: they call the gate's functions on fixture documents
# (no `with`, which regopy 1.5 does not handle reliably). Run: forge policy test.
package forge.training_test

import rego.v1

import data.forge.training

good := {
	"template": {
		"name": "lab", "sha256": "", "track": "ccna", "tier": "intermediate",
		"limits": {"cpu": 1, "memory_mb": 512, "pids": 128, "attacker_max_exploits": 2, "timeout_minutes": 60},
		"network": {"egress": "deny", "allowlist_profile": null},
		"containers": [{"name": "learner", "image": "host", "read_only": true, "router": false, "capabilities": ["NET_ADMIN"]}],
	},
	"request": {"track": "ccna", "template": "lab"},
	"plan": {"name": "PRO", "tracks": ["netplus", "ccna"]},
}

with_template(fields) := object.union(good, {"template": object.union(good.template, fields)})

test_good_template_allowed if {
	training.allowed(good)
	count(training.reasons(good)) == 0
}

test_plan_name_case_insensitive if {
	training.allowed(object.union(good, {"plan": {"name": "pro", "tracks": ["ccna"]}}))
}

test_wrong_track_denied if {
	doc := object.union(good, {"request": {"track": "netplus", "template": "lab"}})
	not training.allowed(doc)
	training.reasons(doc)["template \"lab\" is for track \"ccna\", but track \"netplus\" was requested"]
}

test_other_template_denied if {
	doc := object.union(good, {"request": {"track": "ccna", "template": "other"}})
	not training.allowed(doc)
	training.reasons(doc)["template \"lab\" is not the authorised template \"other\""]
}

test_track_and_tier_outside_plan_denied if {
	doc := object.union(good, {"plan": {"name": "FREE", "tracks": ["netplus"]}})
	not training.allowed(doc)
	training.reasons(doc)["plan FREE does not include track \"ccna\""]
	training.reasons(doc)["tier \"intermediate\" is not allowed on plan FREE (allowed: foundation)"]
}

test_unknown_plan_denied if {
	doc := object.union(good, {"plan": {"name": "GOLD", "tracks": ["ccna"]}})
	not training.allowed(doc)
	training.reasons(doc)["unknown plan \"GOLD\""]
}

test_unknown_track_denied if {
	doc := object.union(with_template({"track": "banana"}), {"request": {"track": "banana", "template": "lab"}})
	not training.allowed(doc)
	training.reasons(doc)["unknown track \"banana\" (known: ccna, cissp, netplus)"]
}

test_unapproved_allowlist_profile_denied if {
	doc := with_template({"network": {"egress": "allowlist", "allowlist_profile": "internet"}})
	not training.allowed(doc)
	training.reasons(doc)["egress allowlist profile \"internet\" is not approved (approved: package-mirrors)"]
}

test_approved_allowlist_profile_allowed if {
	training.allowed(with_template({"network": {"egress": "allowlist", "allowlist_profile": "package-mirrors"}}))
}

test_exploit_limits_enforced if {
	doc := with_template({"limits": {"cpu": 1, "memory_mb": 512, "pids": 128, "attacker_max_exploits": 21, "timeout_minutes": 60}})
	not training.allowed(doc)
	training.reasons(doc)["limits.attacker_max_exploits 21 exceeds the PRO plan limit of 10"]
	training.reasons(doc)["limits.attacker_max_exploits 21 exceeds the intermediate tier limit of 20"]
}

test_plan_caps_enforced if {
	doc := with_template({"limits": {"cpu": 3, "memory_mb": 512, "pids": 128, "attacker_max_exploits": 0, "timeout_minutes": 600}})
	not training.allowed(doc)
	training.reasons(doc)["limits.cpu 3 exceeds the PRO plan cap of 2"]
	training.reasons(doc)["limits.timeout_minutes 600 exceeds the PRO plan cap of 120"]
}

test_missing_input_denied if {
	not training.allowed({})
	training.reasons({})["limits.cpu is missing or not a number"]
}
