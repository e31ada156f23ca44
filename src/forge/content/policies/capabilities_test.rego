# Unit tests for forge.capabilities (functions on fixture documents; no `with`).
package forge.capabilities_test

import rego.v1

import data.forge.capabilities

lab(track, tier, caps) := {"template": {
	"name": "lab", "track": track, "tier": tier,
	"containers": [{"name": "learner", "capabilities": caps}, {"name": "target", "capabilities": []}],
}}

test_foundation_allows_no_capabilities if {
	capabilities.allowed(lab("netplus", "foundation", []))
}

test_foundation_denies_net_raw if {
	doc := lab("netplus", "foundation", ["NET_RAW"])
	not capabilities.allowed(doc)
	capabilities.reasons(doc)["container \"learner\" requests capability NET_RAW, not allowed for netplus/foundation (allowed: none)"]
}

test_ccna_intermediate_allows_net_admin if {
	capabilities.allowed(lab("ccna", "intermediate", ["NET_ADMIN", "NET_RAW"]))
}

test_privileged_capability_denied if {
	doc := lab("ccna", "intermediate", ["SYS_ADMIN"])
	not capabilities.allowed(doc)
	capabilities.reasons(doc)["container \"learner\" requests privileged capability SYS_ADMIN, not allowed for ccna/intermediate"]
}

test_privileged_allowed_only_where_listed if {
	capabilities.allowed(lab("cissp", "advanced", ["SYS_PTRACE"]))
	not capabilities.allowed(lab("cissp", "intermediate", ["SYS_PTRACE"]))
}

test_unknown_track_allows_nothing if {
	doc := lab("banana", "foundation", ["NET_RAW"])
	not capabilities.allowed(doc)
	capabilities.reasons(doc)["no capability table entry for banana/foundation; no capabilities are allowed"]
}

test_malformed_containers_denied if {
	doc := {"template": {"track": "ccna", "tier": "intermediate", "containers": "x"}}
	not capabilities.allowed(doc)
	capabilities.reasons(doc)["template.containers must be a list of {name, capabilities: [...]}"]
}
