# Capabilities gate: which Linux capabilities may each lab host keep, per track and tier?
#
# Input: the same document as forge.training; reads template.track, template.tier and
# template.containers[].{name, capabilities}. A capability not in the table for the
# template's track/tier is denied. Privileged capabilities are named as such in the reason
# and are only ever allowed where the table lists them explicitly.
# Logic is in functions of the input (`reasons(doc)`, `allowed(doc)`) so tests need no `with`;
# `allow` is read off the positive checks alone, the reasons are worded only for a deny.
package forge.capabilities

import rego.v1

# The tables are data, in data.json (rego-cpp builds a constant object again on every
# query that reads it; a data document is loaded once): data.forge.tables.capabilities
# .allowed is track -> tier -> capabilities a host may keep (absent entries allow none),
# .privileged the capabilities named as privileged in a reason. Sets are objects whose
# values are true.

default allow := false

# `allow` from the positive checks; the deny set only for a deny, over `current` (the
# fields the gate reads, in the input's shape, without the rest of a larger document).
current := {"template": {
	"track": object.get(input, ["template", "track"], null),
	"tier": object.get(input, ["template", "tier"], null),
	"containers": object.get(input, ["template", "containers"], null),
}}

allow if passes(input)

deny_reasons := set() if allow

deny_reasons := reasons(current) if not allow

show(x) := x if is_string(x)

show(x) := sprintf("%v", [x]) if not is_string(x)

track_of(doc) := object.get(doc, ["template", "track"], null)

tier_of(doc) := object.get(doc, ["template", "tier"], null)

containers_of(doc) := object.get(doc, ["template", "containers"], null)

scope(doc) := concat("", [show(track_of(doc)), "/", show(tier_of(doc))])

# Allowed capabilities for the template's track/tier (undefined when no table entry).
allowed_caps(doc) := {cap | caps[cap]} if {
	track := track_of(doc)
	tier := tier_of(doc)
	caps := data.forge.tables.capabilities.allowed[track][tier]
}

allowed_list(doc) := concat(", ", sort(allowed_caps(doc))) if count(allowed_caps(doc)) > 0

allowed_list(doc) := "none" if count(allowed_caps(doc)) == 0

well_formed(doc) if {
	cs := containers_of(doc)
	is_array(cs)
	every c in cs {
		is_string(c.name)
		is_array(c.capabilities)
	}
}

cap_allowed(doc, cap) if {
	ok := allowed_caps(doc)
	ok[cap]
}

requested(doc) := {[c.name, cap] |
	some c in containers_of(doc)
	some cap in c.capabilities
}

# Every positive check, straight on the document's fields (a missing field fails a check;
# `current` is built only to word the reasons of a deny). A reason that fails to render can
# never turn a deny into an allow: allow needs these checks, never the reasons. Every
# reason below contradicts one of them, so an allowed document has none
# (tests/policy/test_corpus.py checks it on every recorded and generated document).
passes(doc) if {
	t := doc.template
	ok := data.forge.tables.capabilities.allowed[t.track][t.tier]
	cs := t.containers
	is_array(cs)
	every c in cs {
		is_string(c.name)
		is_array(c.capabilities)
		every cap in c.capabilities {
			ok[cap]
		}
	}
}

# For the unit tests: the same answer as `allow` for a document.
allowed(doc) if passes(doc)

reasons(doc) := {"template.containers must be a list of {name, capabilities: [...]}" |
	not well_formed(doc)
} | {m |
	not allowed_caps(doc)
	count(requested(doc)) > 0
	m := concat("", ["no capability table entry for ", scope(doc), "; no capabilities are allowed"])
} | {m |
	some pair in requested(doc)
	cap := pair[1]
	data.forge.tables.capabilities.privileged[cap]
	not cap_allowed(doc, cap)
	m := concat("", ["container \"", pair[0], "\" requests privileged capability ", show(pair[1]), ", not allowed for ", scope(doc)])
} | {m |
	some pair in requested(doc)
	not data.forge.tables.capabilities.privileged[pair[1]]
	ok := allowed_caps(doc)
	not ok[pair[1]]
	m := concat("", ["container \"", pair[0], "\" requests capability ", show(pair[1]), ", not allowed for ", scope(doc), " (allowed: ", allowed_list(doc), ")"])
}
