"""A seed written through an image's symbolic links must land in the host, never the machine.

Seeds of an image host are written by the platform, as root, into the host's root
overlay before the host starts. An image's links are absolute or climb with ``..``
(``/etc/localtime -> /usr/share/zoneinfo/Etc/UTC``): joined naively onto the overlay's
path on the machine and opened following links, a seed ``/etc/localtime`` would rewrite
the machine's own zone file, and a crafted image or template could write any file of the
machine as root. Links are resolved inside the host's tree, as if it were ``/``.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.local import LocalRuntime

from ..support.images import ensure_default_image
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root


@pytest.fixture()
def machine_dir() -> Iterator[Path]:
    """A directory of the machine the crafted image's links point at (outside /tmp)."""
    path = Path("/var/lib") / f"forge-escape-{secrets.token_hex(6)}"
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_seeds_follow_image_links_only_inside_the_host(tmp_path: Path, machine_dir: Path) -> None:
    base = ensure_default_image()
    image = tmp_path / "crafted"  # a hard-linked copy of base plus three hostile links
    subprocess.run(["cp", "-al", str(base), str(image)], check=True)
    (image / "etc" / "abs").symlink_to(machine_dir)
    (image / "etc" / "rel").symlink_to("../" * 12 + str(machine_dir).lstrip("/"))
    (image / "etc" / "final.conf").symlink_to(machine_dir / "final.conf")
    prefix, state = runtime_prefix("e"), str(tmp_path / "runtime")
    rt = LocalRuntime(state, prefix=prefix, images={"crafted": str(image)})
    try:
        rt.create(LabSpec("escape", [SubnetSpec("a", "10.85.0.0/24")], [
            HostSpec("box", networks=[("a", None)], image="crafted",
                     files={"/etc/abs/a.txt": "A\n", "/etc/rel/b.txt": "B\n",
                            "/etc/final.conf": "C\n"})]))
        # Nothing was written on the machine ...
        assert list(machine_dir.iterdir()) == []
        # ... the seeds are in the host, where its own links lead.
        res = rt.exec("escape", "box", shell=f"cat {machine_dir}/a.txt {machine_dir}/b.txt "
                                               "/etc/final.conf")
        assert (res.exit_code, res.stdout_text) == (0, "A\nB\nC\n")
    finally:
        for info in rt.list():
            rt.destroy(info.lab_id)
        rt.close()
    assert list(machine_dir.iterdir()) == []
    assert not (image / str(machine_dir).lstrip("/")).exists()  # nor in the image


def test_no_host_may_keep_a_capability_that_overrides_file_ownership() -> None:
    """The writable root holds the programs the platform runs there as root (bwrap,
    setpriv): a lab user with CHOWN, DAC_OVERRIDE, FOWNER, SETUID… could replace them. The
    capabilities gate denies these; the runtime refuses them too, whatever the gate says."""
    from forge.runtime.base import SpecError
    from forge.runtime.plan import plan_lab

    for cap in ("DAC_OVERRIDE", "CAP_FOWNER", "setuid", "CHOWN", "SYS_ADMIN"):
        spec = LabSpec(lab_id="caps-test", subnets=[SubnetSpec("a", "10.90.1.0/24")], hosts=[
            HostSpec("box", networks=[("a", None)], image="base", capabilities=[cap])])
        with pytest.raises(SpecError) as err:
            plan_lab(spec)
        assert "hosts[0].capabilities[0]" in str(err.value)
        assert "rewrite root's files" in str(err.value)


def test_a_learner_owned_seed_among_the_platforms_programs_is_refused() -> None:
    from forge.templates.seedpaths import seed_path_problem

    for path in ("/usr/local/sbin/bwrap", "/usr/bin/setpriv", "/bin/sh", "/lib64/x.so",
                 "/etc/ld.so.preload", "/etc/ld.so.conf.d/evil.conf"):
        problem = seed_path_problem(path, True, "learner")
        assert problem is not None and "owner learner is not possible" in problem, path
        assert seed_path_problem(path, True, "root") is None, path
    assert seed_path_problem("/etc/ssh/sshd_config", True, "learner") is None
