"""Each host's root as ``host_roots`` decides it before a create: an image the hosts of a
lab share is looked up once for all of them."""

from __future__ import annotations

import pytest

from forge.images.lookup import ImageNotBuilt
from forge.runtime.base import HostSpec, LabSpec, SpecError, SubnetSpec
from forge.runtime.local.rootfs import host_roots
from forge.runtime.plan import plan_lab


def _lab(*images: str | None) -> LabSpec:
    """One host per image on one subnet, named h0, h1, ..."""
    return LabSpec("roots", [SubnetSpec("a", "10.50.1.0/24")],
                   [HostSpec(f"h{i}", networks=[("a", None)], image=image)
                    for i, image in enumerate(images)])


def test_an_image_shared_by_hosts_is_resolved_once_per_lab() -> None:
    """Three hosts on one image, one on another and one on the default: one lookup per
    name (a lookup per host cost the default resolver, which reads the settings, about
    2 ms of CPU per host), and every host still gets its image's tree."""
    asked: list[str] = []

    def resolve(name: str) -> str:
        asked.append(name)
        return f"/cache/{name}/rootfs"

    plan = plan_lab(_lab("base", "router", "base", None, "base"))
    roots = host_roots(plan, "/", {}, resolve, default="base")
    assert sorted(asked) == ["base", "router"]
    assert roots == {"h0": ("/cache/base/rootfs", True), "h1": ("/cache/router/rootfs", True),
                     "h2": ("/cache/base/rootfs", True), "h3": ("/cache/base/rootfs", True),
                     "h4": ("/cache/base/rootfs", True)}
    # A later create looks the image up again (one built since counts).
    host_roots(plan, "/", {}, resolve, default="base")
    assert sorted(asked) == ["base", "base", "router", "router"]


def test_an_unbuilt_shared_image_names_the_first_host_that_uses_it() -> None:
    def unbuilt(name: str) -> str:
        raise ImageNotBuilt(name, defined=True)

    plan = plan_lab(_lab(None, "ssh", "ssh"))
    with pytest.raises(SpecError) as err:
        host_roots(plan, "/", {}, unbuilt)
    assert err.value.field == "hosts[1].image"
    assert "run forge image build ssh" in str(err.value)
