# Every gate in one query (issue 19 item 4): one evaluation answers each gate's decision
# over one input document, so the input is parsed once and no gate is evaluated twice.
#
# Input: the union of the gates' documents (they agree on shared fields):
#   template                      forge.training and forge.capabilities
#   request: {request_id, track, template}, plan: {name, tracks}
#   subject, tenant, quota        forge.spawn
#   assignment (optional)         forge.assignment's window and attempts, inside forge.spawn
#
# Entries (each an object: package -> {allow, deny_reasons}):
#   launch  training + capabilities: the orchestrator, before it builds a lab
#   admit   the spawn gate without quotas, with the assignment rules: spawn_service, before
#           it reserves anything (the store's limiter enforces quotas atomically then)
#   all     training + capabilities + spawn (quotas and assignment included): for tests
#           only (the corpus and cache tests); no service asks it
package forge.gates

import rego.v1

import data.forge.capabilities
import data.forge.spawn
import data.forge.training

launch := {
	"forge.training": {"allow": training.allow, "deny_reasons": training.deny_reasons},
	"forge.capabilities": {"allow": capabilities.allow, "deny_reasons": capabilities.deny_reasons},
}

admit := {"forge.spawn": {"allow": spawn.admission_allow, "deny_reasons": spawn.admission_reasons}}


all := object.union(launch, {"forge.spawn": {"allow": spawn.allow, "deny_reasons": spawn.deny_reasons}})
