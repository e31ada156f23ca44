"""Every semantic rule of the Scenario DSL reports the offending path and value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge.templates.dsl_limits import MAX_EXEC_STRING_BYTES, MAX_HOST_EXEC_BYTES

Doc = dict[str, Any]
Check = Callable[[Doc], list[str]]


def _containers(doc: Doc) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = doc["spec"]["assets"]["containers"]
    return result


def test_good_fixture_has_no_problems(good_doc: Doc, problems_of: Check) -> None:
    assert problems_of(good_doc) == []


def test_unknown_subnet(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[1]["networks"][0] = {"subnet": "mgmt"}
    assert problems_of(good_doc) == [
        'spec.assets.containers[1].networks[0]: unknown subnet "mgmt"'
    ]


def test_a_subnet_with_a_bad_cidr_is_not_also_unknown(good_doc: Doc,
                                                      problems_of: Check) -> None:
    """An author's /8 is one problem, on the cidr. Before: every host attached to the
    subnet also got 'unknown subnet', naming a subnet that is declared right there."""
    good_doc["spec"]["network"]["subnets"][0]["cidr"] = "10.0.0.0/8"
    assert problems_of(good_doc) == [
        'spec.network.subnets[0].cidr: prefix length must be between /24 and /29, '
        'got "10.0.0.0/8"']


def test_a_subnet_wider_than_a_24_is_refused(good_doc: Doc, problems_of: Check) -> None:
    """A lab has at most 16 hosts; a /16 (accepted before) let a host without NET_ADMIN
    sweep 65,534 addresses, each a neighbour entry of the machine's one table (14,985 in
    12 s from a bash loop), where a /24 bounds a sweep to 254."""
    good_doc["spec"]["network"]["subnets"][0]["cidr"] = "10.61.0.0/16"
    good_doc["spec"]["network"]["subnets"][1]["cidr"] = "10.62.0.0/23"
    assert problems_of(good_doc) == [
        'spec.network.subnets[0].cidr: prefix length must be between /24 and /29, '
        'got "10.61.0.0/16"',
        'spec.network.subnets[1].cidr: prefix length must be between /24 and /29, '
        'got "10.62.0.0/23"']


def test_a_bad_item_of_a_list_is_not_also_a_list_too_short(good_doc: Doc,
                                                             problems_of: Check) -> None:
    """`weight: 0` on the only criterion is one problem. Before: also 'successCriteria:
    Tuple should have at least 1 item after validation, not 0', of a list of one."""
    good_doc["spec"]["successCriteria"] = good_doc["spec"]["successCriteria"][:1]
    good_doc["spec"]["successCriteria"][0]["weight"] = 0
    assert problems_of(good_doc) == [
        "spec.successCriteria[0].weight: Input should be greater than 0"]


def test_duplicate_container_names(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[2]["name"] = "learner"
    found = problems_of(good_doc)
    assert 'spec.assets.containers[0]: duplicate container name "learner"' in found
    assert 'spec.assets.containers[2]: duplicate container name "learner"' in found


def test_duplicate_subnet_names(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["network"]["subnets"][1]["name"] = "lan"
    assert 'spec.network.subnets[1]: duplicate subnet name "lan"' in problems_of(good_doc)


def test_duplicate_criterion_ids(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["successCriteria"][1]["id"] = "saved-page"
    assert 'spec.successCriteria[1]: duplicate criterion id name "saved-page"' in problems_of(
        good_doc
    )


def test_address_outside_subnet(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[0]["networks"][0]["address"] = "10.61.2.10"
    found = problems_of(good_doc)
    assert (
        'spec.assets.containers[0].networks[0].address: 10.61.2.10 is outside subnet "lan" '
        "(10.61.1.0/24)" in found
    )


def test_network_and_broadcast_addresses_refused(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[0]["networks"][0]["address"] = "10.61.1.255"
    _containers(good_doc)[2]["networks"][0]["address"] = "10.61.2.0"
    found = problems_of(good_doc)
    assert (
        "spec.assets.containers[0].networks[0].address: 10.61.1.255 is the network or "
        "broadcast address of 10.61.1.0/24" in found
    )
    assert any(p.startswith("spec.assets.containers[2].networks[0].address: 10.61.2.0 ")
               for p in found)


def test_address_used_twice(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[2]["networks"][0]["address"] = "10.61.2.1"
    assert (
        'spec.assets.containers[2].networks[0].address: 10.61.2.1 is already used by "router"'
        in problems_of(good_doc)
    )


def test_invalid_and_overlapping_cidrs(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["network"]["subnets"].append({"name": "wide", "cidr": "10.61.1.0/25"})
    good_doc["spec"]["network"]["subnets"].append({"name": "junk", "cidr": "10.61.3.1/24"})
    found = problems_of(good_doc)
    assert any(p.startswith('spec.network.subnets[2].cidr: "10.61.1.0/25" overlaps') for p in found)
    assert any(p.startswith('spec.network.subnets[3].cidr: invalid IPv4 CIDR "10.61.3.1/24"')
               for p in found)


def test_public_subnet_refused(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["network"]["subnets"][1]["cidr"] = "8.8.8.0/24"
    assert (
        'spec.network.subnets[1].cidr: lab subnets must be private ranges, got "8.8.8.0/24"'
        in problems_of(good_doc)
    )


def test_route_via_unreachable(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[0]["routes"][0]["via"] = "10.61.2.1"
    assert problems_of(good_doc) == [
        "spec.assets.containers[0].routes[0].via: gateway 10.61.2.1 is not on any subnet "
        "this host attaches to"
    ]


def test_route_destination_must_be_cidr_or_default(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[0]["routes"][0]["to"] = "elsewhere"
    assert problems_of(good_doc) == [
        'spec.assets.containers[0].routes[0].to: "elsewhere" is neither a CIDR nor "default"'
    ]


def test_router_needs_two_subnets(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[0]["router"] = True
    assert problems_of(good_doc) == [
        "spec.assets.containers[0].router: a router must attach to at least 2 subnets"
    ]


def test_check_targets_declared_container(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["successCriteria"][0]["checks"][0]["container"] = "attacker"
    assert problems_of(good_doc) == [
        'spec.successCriteria[0].checks[0].container: unknown container "attacker"'
    ]


def test_expect_needs_an_expectation(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["successCriteria"][1]["checks"][0]["expect"] = {}
    assert problems_of(good_doc) == [
        "spec.successCriteria[1].checks[0].expect: name at least one of exit_code, "
        "stdout_contains, stdout_regex, stderr_contains"
    ]


def test_expect_regex_must_compile(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["successCriteria"][1]["checks"][0]["expect"] = {"stdout_regex": "via ("}
    found = problems_of(good_doc)
    assert len(found) == 1
    assert found[0].startswith(
        "spec.successCriteria[1].checks[0].expect.stdout_regex: regex does not compile"
    )


def test_hard_caps(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["limits"].update(cpu=64, memory_mb=65536, pids=100000)
    found = problems_of(good_doc)
    assert "spec.limits.cpu: Input should be less than or equal to 4" in found
    assert "spec.limits.memory_mb: Input should be less than or equal to 8192" in found
    assert "spec.limits.pids: Input should be less than or equal to 4096" in found


def test_file_paths_confined(good_doc: Doc, problems_of: Check) -> None:
    files = _containers(good_doc)[0]["files"]
    files[0]["path"] = "/etc/passwd"
    files.append({"path": "/workspace/../etc/shadow", "content": "x"})
    files.append({"path": "workspace/rel.txt", "content": "x"})
    found = problems_of(good_doc)
    assert ('spec.assets.containers[0].files[0].path: "/etc/passwd" is a lab identity file, '
            "which the platform binds over the image") in found
    _containers(good_doc)[0]["image"] = "host"  # the machine's read-only userland
    assert any(p.startswith('spec.assets.containers[0].files[0].path: "/etc/passwd" is outside')
               for p in problems_of(good_doc))
    assert ('spec.assets.containers[0].files[1].path: "/workspace/../etc/shadow" must be a '
            'normalised path without ".."') in found
    assert ('spec.assets.containers[0].files[2].path: "workspace/rel.txt" must be an absolute '
            "path") in found


def test_capability_names(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[0]["capabilities"] = ["NET_ADMIN", "CAP_NET_RAW", "NET_MAGIC"]
    assert problems_of(good_doc) == [
        'spec.assets.containers[0].capabilities[1]: write "NET_RAW" without the CAP_ prefix',
        'spec.assets.containers[0].capabilities[2]: unknown Linux capability "NET_MAGIC"',
    ]


def test_service_values_must_fit_one_exec(good_doc: Doc, problems_of: Check) -> None:
    """A value the kernel would refuse at exec (E2BIG) is refused by `forge template
    check`, not found when a pooled lab's service fails to start."""
    room = MAX_EXEC_STRING_BYTES - len("FGE_BIG=")  # as an exec carries it
    box = _containers(good_doc)[0]
    box["environment"] = {"BIG": "é" * (room // 2 + 1)}  # counted in bytes, not characters
    box["command"] = ["/bin/sh", "-c", "x" * 8000] * 20
    found = problems_of(good_doc)
    assert any(p.startswith("spec.assets.containers[0].environment.BIG: is ") for p in found)
    assert any(p.startswith("spec.assets.containers[0].command: is ") for p in found)
    box["environment"] = {"BIG": "x" * room, "MORE": "x" * (room - 1)}  # each one fits
    box["command"] = ["/bin/true"]
    assert problems_of(good_doc) == [
        "spec.assets.containers[0].environment: environment and command are 262158 bytes "
        f"together; at most {MAX_HOST_EXEC_BYTES} per host"]
    box["environment"] = {"BIG": "x" * room}
    assert problems_of(good_doc) == []


def test_labels_need_known_track_and_tier(good_doc: Doc, problems_of: Check) -> None:
    good_doc["metadata"]["labels"] = ["class:cooking", "owner:x"]
    assert problems_of(good_doc) == [
        'metadata.labels: unknown class "cooking" (known: netplus, ccna, cissp)',
        'metadata.labels: need exactly one "tier:" label, found 0',
    ]


def test_unknown_variable_reference(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[2]["command"][3] = "{{ vars.prot }}"
    assert problems_of(good_doc) == [
        'spec.assets.containers[2].command[3]: unknown variable "prot" in {{ vars.prot }}'
    ]


def test_variable_in_unrendered_field(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[2]["files"][0]["path"] = "/srv/{{ vars.secret }}.html"
    assert problems_of(good_doc) == [
        "spec.assets.containers[2].files[0].path: variables may only be used in description, "
        "service commands, environment values, file contents, check stdin and check "
        "expectations"
    ]


def test_variable_in_a_check_command_is_refused(good_doc: Doc, problems_of: Check) -> None:
    check = good_doc["spec"]["successCriteria"][0]["checks"][0]
    check["command"] = ["/bin/sh", "-c", 'test "$(cat /workspace/a)" = "{{ vars.secret }}"']
    assert problems_of(good_doc) == [
        "spec.successCriteria[0].checks[0].command[2]: a check's command must not contain "
        "variables (a process's argv is readable); hand expected values to the check on its "
        "stdin"
    ]
    del check["command"]
    check["command"] = ["/bin/sh", "-c", 'read -r want; test "$(cat /workspace/a)" = "$want"']
    check["stdin"] = "{{ vars.secret }}\n"
    assert problems_of(good_doc) == []


def test_live_check_on_the_learner_host_is_refused(good_doc: Doc, problems_of: Check) -> None:
    check = good_doc["spec"]["successCriteria"][0]["checks"][0]
    check["container"] = "learner"
    check["live"] = True
    assert problems_of(good_doc) == [
        "spec.successCriteria[0].checks[0].live: a live check must reach the learner's host "
        'over the lab network from another host, not run on "learner"'
    ]


def test_schema_errors_carry_dsl_paths(good_doc: Doc, problems_of: Check) -> None:
    del good_doc["spec"]["successCriteria"][0]["checks"][0]["command"]
    good_doc["spec"]["network"]["egress"] = "open"
    good_doc["apiVersion"] = "frostgate.forge/v2"
    found = problems_of(good_doc)
    assert "spec.successCriteria[0].checks[0].command: Field required" in found
    assert any(p.startswith("spec.network.egress: Input should be 'deny' or 'allowlist'")
               for p in found)
    assert any(p.startswith("apiVersion: Input should be 'frostgate.forge/v1'") for p in found)


def test_allowlist_needs_profile(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["network"]["egress"] = "allowlist"
    assert problems_of(good_doc) == [
        "spec.network: egress 'allowlist' requires allowlist_profile"
    ]


def test_unknown_fields_rejected(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[0]["privileged"] = True
    assert problems_of(good_doc) == [
        "spec.assets.containers[0].privileged: Extra inputs are not permitted"
    ]


def test_bad_mapping_keys_named(good_doc: Doc, problems_of: Check) -> None:
    _containers(good_doc)[2]["environment"]["BAD-KEY"] = "x"
    good_doc["spec"]["variables"]["y"] = {"kind": "int", "min": 5}
    found = problems_of(good_doc)
    assert any(p.startswith("spec.assets.containers[2].environment.BAD-KEY (key): String should "
                            "match pattern") for p in found)
    assert "spec.variables.y: int variables need min and max" in found


def test_more_checks_than_one_completion_event_carries(good_doc: Doc,
                                                       problems_of: Check) -> None:
    check = good_doc["spec"]["successCriteria"][0]["checks"][0]
    good_doc["spec"]["successCriteria"] = [
        {"id": f"c{i}", "description": "many checks", "checks": [check] * 32}
        for i in range(9)
    ]
    found = problems_of(good_doc)
    assert any(p.startswith("spec.successCriteria: 288 checks in all; at most 256")
               for p in found), found


def test_hint_for_an_unknown_criterion(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["hints"] = [{"criterion": "no-such-task", "text": "look closer"},
                                 {"text": "a hint for the whole lab"}]
    assert problems_of(good_doc) == [
        'spec.hints[0].criterion: unknown success criterion "no-such-task"'
    ]


def test_hints_take_no_variables(good_doc: Doc, problems_of: Check) -> None:
    good_doc["spec"]["hints"] = [{"text": "the answer is {{ vars.code }}"}]
    found = problems_of(good_doc)
    assert any(p.startswith("spec.hints[0].text: variables may only be used") for p in found)


def test_file_paths_on_an_image_host(good_doc: Doc, problems_of: Check) -> None:
    container = _containers(good_doc)[0]
    container["image"] = "ssh"
    container["files"] = [
        {"path": "/etc/ssh/sshd_config.d/lab.conf", "content": "x", "owner": "learner"},
        {"path": "/usr/local/bin/tool", "content": "x"},
        {"path": "/run/sshd.pid", "content": "x"},
        {"path": "/etc/hosts", "content": "x"},
        {"path": "/opt/forge/grade.sh", "content": "x", "owner": "learner"},
    ]
    found = [p for p in problems_of(good_doc) if ".files[" in p]
    assert found == [
        'spec.assets.containers[0].files[2].path: "/run/sshd.pid" is under one of /proc, '
        "/sys, /dev, /run, /tmp, /var/tmp, which are mounted over the image",
        'spec.assets.containers[0].files[3].path: "/etc/hosts" is a lab identity file, which '
        "the platform binds over the image",
        'spec.assets.containers[0].files[4].path: "/opt/forge/grade.sh" is in /opt/forge, the '
        "read-only seeds' tree: owner learner is not possible",
    ]


def test_a_seed_mode_given_is_kept_even_the_default(good_doc: dict[str, Any]) -> None:
    """`mode: 0644` on a #! script stays 0644 (it used to equal the default and become
    0755); without a mode a #! script gets 0755 and other files 0644."""
    from forge.runtime.plan import seed_mode
    from forge.services.orchestrator.labspec import lab_spec
    from forge.templates import validate_document
    from forge.templates.variables import generate_values, render

    files = _containers(good_doc)[0]["files"]
    files[:] = [{"path": "/workspace/given.sh", "content": "#!/bin/sh\n", "mode": 0o644},
                {"path": "/workspace/script.sh", "content": "#!/bin/sh\n"},
                {"path": "/workspace/notes.txt", "content": "x\n"}]
    template, problems = validate_document(good_doc)
    assert template is not None, problems
    host = lab_spec("mode-1", render(template, generate_values(template))).hosts[0]
    got = {path: oct(seed_mode(host, path, data if isinstance(data, bytes) else data.encode()))
           for path, data in host.files.items()}
    assert got == {"/workspace/given.sh": "0o644", "/workspace/script.sh": "0o755",
                   "/workspace/notes.txt": "0o644"}


def test_hint_costs_are_fractions_of_the_score_up_to_one_half(good_doc: Doc,
                                                              problems_of: Check) -> None:
    good_doc["spec"]["hints"] = [{"text": "free"}, {"text": "ten percent", "cost": 0.1},
                                 {"text": "half", "cost": 0.5}]
    assert problems_of(good_doc) == []
    for bad in (0.6, -0.1, "0.1", float("inf"), True):
        good_doc["spec"]["hints"] = [{"text": "a hint", "cost": bad}]
        found = problems_of(good_doc)
        assert found and all(p.startswith("spec.hints[0].cost") for p in found), (bad, found)


def test_the_hint_cost_field_docs_labs_md_names_is_the_one_the_check_prints(
        good_doc: Doc, problems_of: Check) -> None:
    """docs/labs.md said a bad cost is refused naming `spec.hints.1.cost`; the check names
    `spec.hints[1].cost`, which an author searching the output for the doc's form misses."""
    good_doc["spec"]["hints"] = [{"text": "free"}, {"text": "too dear", "cost": 0.7}]
    [found] = problems_of(good_doc)
    field = found.split(":", 1)[0]
    assert field == "spec.hints[1].cost"
    doc = (Path(__file__).resolve().parents[2] / "docs" / "labs.md").read_text()
    assert f"refused naming the\nfield (`{field}`)" in doc


def test_ready_ports_are_tcp_ports_or_int_variables(good_doc: Doc, problems_of: Check) -> None:
    """A host's ready_ports: numbers or an int variable's reference, each problem named by
    its field; a host without a service declares none."""
    _containers(good_doc)[2]["ready_ports"] = [8080, "{{ vars.port }}", "443"]
    assert problems_of(good_doc) == []
    _containers(good_doc)[2]["ready_ports"] = [70000, "http", True, "{{ vars.secret }}",
                                              "99999", "{{ vars.nope }}"]
    good_doc["spec"]["variables"]["wide"] = {"kind": "int", "min": 0, "max": 70000}
    _containers(good_doc)[1]["ready_ports"] = ["{{ vars.wide }}"]
    found = problems_of(good_doc)
    where = "spec.assets.containers[2].ready_ports"
    assert f"{where}[0]: port 70000 is not in 1..65535" in found
    shape = ('must be a TCP port number (1..65535) or "{{ vars.NAME }}" naming an int '
             "variable")
    assert f"{where}[1]: {shape}" in found and f"{where}[2]: {shape}" in found
    good_doc["spec"]["variables"].pop("wide")
    _containers(good_doc)[1].pop("ready_ports")
    _containers(good_doc)[2]["ready_ports"] = ["{{ vars.secret }}", "99999", "{{ vars.nope }}"]
    _containers(good_doc)[0]["ready_ports"] = [22]
    assert sorted(problems_of(good_doc)) == sorted([
        f'{where}[0]: "{{{{ vars.secret }}}}" is a token variable, not an int one',
        f"{where}[1]: port 99999 is not in 1..65535",
        f'{where}[2]: unknown variable "nope" in {{{{ vars.nope }}}}',
        "spec.assets.containers[0].ready_ports: the host has no command: nothing would "
        "listen on these ports",
    ])
    good_doc["spec"]["variables"]["wide"] = {"kind": "int", "min": 0, "max": 70000}
    _containers(good_doc)[0].pop("ready_ports")
    _containers(good_doc)[2]["ready_ports"] = ["{{ vars.wide }}"]
    assert problems_of(good_doc) == [
        f'{where}[0]: "{{{{ vars.wide }}}}" may be 0..70000, not a TCP port (1..65535)']


def test_ready_ports_reach_the_lab_spec_as_numbers(good_doc: Doc) -> None:
    """Rendered, a variable's reference is this scenario's value: the runtime gets ints."""
    from forge.services.orchestrator.labspec import lab_spec
    from forge.templates import validate_document
    from forge.templates.variables import generate_values, render

    _containers(good_doc)[2]["ready_ports"] = [8080, "{{ vars.port }}"]
    template, problems = validate_document(good_doc)
    assert template is not None, problems
    values = generate_values(template)
    host = lab_spec("ready-1", render(template, values)).hosts[2]
    assert host.ready_ports == [8080, int(values["port"])]


def test_a_host_whose_service_names_no_variable_is_shared(good_doc: Doc) -> None:
    """Its service is the same in every scenario: a warm pool lab runs it already."""
    from forge.services.orchestrator.labspec import lab_spec, shared_hosts
    from forge.templates import validate_document
    from forge.templates.variables import generate_values, render

    template, problems = validate_document(good_doc)
    assert template is not None, problems
    assert shared_hosts(template) == frozenset()  # the target serves the scenario's port
    target = _containers(good_doc)[2]
    target["command"] = ["/usr/bin/python3", "-m", "http.server", "8000"]
    target["ready_ports"] = [8000]
    target.pop("environment")
    target["files"] = [{"path": "/srv/www/index.html", "content": "static\n"}]
    template, problems = validate_document(good_doc)
    assert template is not None, problems
    assert shared_hosts(template) == frozenset({"target"})
    rendered = render(template, generate_values(template))
    assert [h.shared for h in lab_spec("s-1", rendered, template).hosts] == [False, False, True]
    assert not any(h.shared for h in lab_spec("s-1", rendered).hosts)
