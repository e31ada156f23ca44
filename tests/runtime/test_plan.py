"""LabSpec validation and address planning (no root needed): bad input names its field."""

from __future__ import annotations

import pytest

from forge.runtime import HostSpec, LabSpec, Limits, SpecError, SubnetSpec, validate_lab_id
from forge.runtime.local.kernel_names import Names, validate_prefix
from forge.runtime.plan import plan_lab

SUBNETS = [SubnetSpec("a", "10.1.0.0/24"), SubnetSpec("b", "10.2.0.0/24")]


def spec(*hosts: HostSpec, **kw: object) -> LabSpec:
    return LabSpec("lab-1", kw.pop("subnets", SUBNETS), list(hosts), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("lab_id", ["scn-0123456789abcdef", "a", "lab-1", "x" * 40])
def test_valid_lab_ids(lab_id: str) -> None:
    assert validate_lab_id(lab_id) == lab_id


@pytest.mark.parametrize(
    "lab_id", ["", "Lab", "../etc", "a/b", "a.b", "x" * 41, "scn-0123ABCDEF", "-a", "lab\n"]
)
def test_invalid_lab_ids(lab_id: str) -> None:
    with pytest.raises(SpecError) as err:
        validate_lab_id(lab_id)
    assert err.value.field == "lab_id"


def test_fixed_addresses_are_kept_and_others_allocated_around_them() -> None:
    plan = plan_lab(spec(
        HostSpec("x", networks=[("a", None)]),
        HostSpec("r", networks=[("a", "10.1.0.1"), ("b", "10.2.0.1")], router=True),
        HostSpec("y", networks=[("a", None)]),
    ))
    addrs = {h.spec.name: [n.address for n in h.nics] for h in plan.hosts}
    assert addrs == {"x": ["10.1.0.2"], "r": ["10.1.0.1", "10.2.0.1"], "y": ["10.1.0.3"]}


def test_allowlist_reserves_gateway_and_adds_default_route() -> None:
    plan = plan_lab(spec(
        HostSpec("x", networks=[("b", None)]),
        egress="allowlist", allowlist_profile="none",
    ))
    assert plan.gateway == {0: "10.1.0.254", 1: "10.2.0.254"}
    assert plan.hosts[0].routes == [("default", "10.2.0.254")]


@pytest.mark.parametrize(
    ("host", "field"),
    [
        (HostSpec("x", networks=[("dmz", None)]), "hosts[0].networks[0]"),
        (HostSpec("x", networks=[("a", "10.2.0.5")]), "hosts[0].networks[0]"),
        (HostSpec("x", networks=[("a", "10.1.0.255")]), "hosts[0].networks[0]"),
        (HostSpec("x", networks=[]), "hosts[0].networks"),
        (HostSpec("X", networks=[("a", None)]), "hosts[0].name"),
        (HostSpec("x", networks=[("a", None)], routes=[("default", "10.2.0.1")]),
         "hosts[0].routes[0]"),
        (HostSpec("x", networks=[("a", None)], routes=[("10.9.0.0/33", "10.1.0.1")]),
         "hosts[0].routes[0]"),
        (HostSpec("x", networks=[("a", None)], capabilities=["CAP_FLY"]),
         "hosts[0].capabilities[0]"),
        (HostSpec("x", networks=[("a", None)], files={"/etc/passwd": "x"}),
         "hosts[0].files['/etc/passwd']"),
        (HostSpec("x", networks=[("a", None)], files={"/workspace/../etc/x": "x"}),
         "hosts[0].files['/workspace/../etc/x']"),
        (HostSpec("x", networks=[("a", None)], environment={"A-B": "1"}),
         "hosts[0].environment['A-B']"),
        (HostSpec("x", networks=[("a", None)], command="  "), "hosts[0].command"),
        (HostSpec("x", networks=[("a", None)], command="x" * (128 * 1024)), "hosts[0].command"),
        (HostSpec("x", networks=[("a", None)], environment={"V": "\ud800"}),
         "hosts[0].environment.V"),
        (HostSpec("x", networks=[("a", None)], command="true",
                  environment={f"V{i}": "x" * 100_000 for i in range(3)}),
         "hosts[0].environment"),
    ],
)
def test_bad_hosts_name_the_field(host: HostSpec, field: str) -> None:
    with pytest.raises(SpecError) as err:
        plan_lab(spec(host))
    assert err.value.field == field


def test_duplicate_hosts_addresses_and_overlapping_subnets() -> None:
    with pytest.raises(SpecError, match=r"hosts\[1\].name: duplicate"):
        plan_lab(spec(HostSpec("x", networks=[("a", None)]),
                      HostSpec("x", networks=[("a", None)])))
    with pytest.raises(SpecError, match=r"hosts\[1\].networks\[0\]: address 10.1.0.9 is already"):
        plan_lab(spec(HostSpec("x", networks=[("a", "10.1.0.9")]),
                      HostSpec("y", networks=[("a", "10.1.0.9")])))
    with pytest.raises(SpecError, match=r"subnets\[1\].cidr: overlaps"):
        plan_lab(spec(HostSpec("x", networks=[("a", None)]),
                      subnets=[SubnetSpec("a", "10.0.0.0/16"), SubnetSpec("b", "10.0.5.0/24")]))


def test_limits_and_egress_are_checked() -> None:
    host = HostSpec("x", networks=[("a", None)])
    with pytest.raises(SpecError, match=r"limits\.memory_mb"):
        plan_lab(spec(host, limits=Limits(memory_mb=1)))
    with pytest.raises(SpecError, match=r"limits\.pids"):
        plan_lab(spec(host, limits=Limits(pids=0)))
    with pytest.raises(SpecError, match="allowlist_profile"):
        plan_lab(spec(host, egress="allowlist"))
    with pytest.raises(SpecError, match="egress"):
        plan_lab(spec(host, egress="open"))


def test_capabilities_are_normalized() -> None:
    plan = plan_lab(spec(HostSpec("x", networks=[("a", None)],
                                  capabilities=["net_admin", "CAP_NET_ADMIN", "NET_RAW"])))
    assert plan.hosts[0].caps == ["NET_ADMIN", "NET_RAW"]


def test_names_round_trip_and_fit_kernel_limits() -> None:
    names = Names(validate_prefix("fgabc"), "/state")
    lab = "scn-0123456789abcdef"
    assert names.parse(names.switch_ns(lab)) == (lab, None)
    assert names.parse(names.gateway_ns(lab)) == (lab, None)
    assert names.parse(names.host_ns(lab, "web-1")) == (lab, "web-1")
    assert names.parse(names.lab(lab)) == (lab, None)
    assert names.parse("other.scn-0123456789abcdef.sw") is None
    assert names.parse("fgabc.../etc.sw") is None
    assert len(names.uplink(lab)) <= 15
    assert names.uplink(lab) != names.uplink("scn-0123456789abcdee")
    assert names.host_dir(lab, "web-1") == "/state/fgabc.scn-0123456789abcdef/data/.hosts/web-1"
    with pytest.raises(SpecError, match="prefix"):
        validate_prefix("toolong")
    with pytest.raises(SpecError, match="host"):
        names.host_ns(lab, "../x")
