"""An image host's whole root is its own overlay: real daemons, seeds anywhere, disk limit.

One module-wide pair of labs on the shipped ``ssh`` image (real bubblewrap, namespaces,
overlayfs and OpenSSH): lab ``root-a`` has a server running the image's sshd as the lab
user and a client that logs in with a key seeded for this scenario; lab ``root-b`` has
one host with a small disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from forge.runtime import HostSpec, LabSpec, Runtime, SubnetSpec
from forge.runtime.base import Limits, SpecError
from forge.runtime.plan import plan_lab
from tests.runtime.helpers import leftovers

from ..support.configured_runtime import runtime_of, runtime_settings
from ..support.prefixes import runtime_prefix

pytestmark = pytest.mark.root

SERVER = "10.81.0.10"
SSHD = "/usr/sbin/sshd -D -e -p 2222 -o PidFile=none"
LAB_CONF = "/etc/ssh/sshd_config.d/lab.conf"
NOTE = "/etc/forge-lab/notes/readme.txt"
BIG = "/etc/forge-lab/big.log"


def keypair() -> tuple[str, str]:
    """A fresh Ed25519 key: (OpenSSH private key, public key line)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


def tree_digest(root: Path) -> str:
    """Hash of every path, mode, owner and size of an image tree."""
    h = hashlib.sha256()
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(base, name))
            h.update(f"{base}/{name} {st.st_mode} {st.st_uid} {st.st_size}\n".encode())
    return h.hexdigest()


class Labs:
    """The module's runtime, its labs and what they were seeded with."""

    def __init__(self, rt: Runtime, prefix: str, state: str, public: str) -> None:
        self.rt, self.prefix, self.state, self.public = rt, prefix, state, public

    def sh(self, lab: str, host: str, script: str) -> tuple[int, str, str]:
        res = self.rt.exec(lab, host, shell=script, timeout=30)
        return res.exit_code, res.stdout_text, res.stderr_text


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory, ssh_rootfs: Path) -> Iterator[Labs]:
    tmp = tmp_path_factory.mktemp("imgroot")
    prefix = runtime_prefix("r")
    state = str(tmp / "runtime")
    private, public = keypair()
    image_before = tree_digest(ssh_rootfs)
    try:
        with runtime_of(runtime_settings(tmp, prefix)) as rt:
            rt.create(LabSpec("root-a", [SubnetSpec("a", "10.81.0.0/24")], [
                HostSpec("srv", networks=[("a", SERVER)], image="ssh", command=SSHD,
                         files={"/home/.ssh/authorized_keys": public + "\n",
                                LAB_CONF: "# the learner hardens sshd here\n",
                                NOTE: "read me\n", "/usr/local/bin/hello": "echo hi\n",
                                "/etc/localtime": "not a zone\n"},
                         owners={LAB_CONF: "learner"}, modes={"/usr/local/bin/hello": 0o755}),
                HostSpec("cli", networks=[("a", None)], image="ssh",
                         files={"/home/.ssh/id_ed25519": private},
                         modes={"/home/.ssh/id_ed25519": 0o600}),
            ]))
            rt.create(LabSpec("root-b", [SubnetSpec("a", "10.82.0.0/24")], [
                HostSpec("box", networks=[("a", None)], image="ssh",
                         files={BIG: ""}, owners={BIG: "learner"}),
            ], limits=Limits(disk_mb=16)))
            yield Labs(rt, prefix, state, public)
        assert leftovers(prefix, state) == []
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            assert state not in fh.read()  # the root overlays went with the labs' disks
    finally:
        shutil.rmtree(state, ignore_errors=True)
    # Nothing any host wrote, seeded or generated reached the shared image.
    assert tree_digest(ssh_rootfs) == image_before


def test_the_images_sshd_serves_a_login_with_the_scenarios_key(
    labs: Labs, ssh_rootfs: Path,
) -> None:
    # The server's host key was made for this lab: it is in no image and differs per lab.
    assert not list((ssh_rootfs / "etc" / "ssh").glob("ssh_host_*"))
    _, host_key, _ = labs.sh("root-a", "srv", "cat /etc/ssh/ssh_host_ed25519_key.pub")
    _, other_key, _ = labs.sh("root-b", "box", "cat /etc/ssh/ssh_host_ed25519_key.pub")
    assert host_key.startswith("ssh-ed25519 ") and other_key.startswith("ssh-ed25519 ")
    assert host_key.split()[1] != other_key.split()[1]
    # The client knows exactly that host key (strict checking) and logs in with the key
    # seeded for this scenario; sshd runs as the lab user, not root.
    known = f"[{SERVER}]:2222 {' '.join(host_key.split()[:2])}"
    code, out, err = labs.sh("root-a", "cli", f"""
        stat -c %a /home/.ssh/id_ed25519
        echo '{known}' > /home/.ssh/known_hosts
        for i in $(seq 100); do nc -z {SERVER} 2222 && break; sleep 0.1; done
        ssh -i /home/.ssh/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=yes \\
            -p 2222 learner@{SERVER} 'echo "on $(hostname) as $(id -un)"; cat /etc/os-release'
    """)
    assert code == 0, err
    assert out.startswith("600\non srv as learner\n")  # the seed's mode, as ssh needs
    assert out.split("\n", 2)[2] == (ssh_rootfs / "etc" / "os-release").read_text()
    code, out, _ = labs.sh("root-a", "srv", "ps -o user=,args= -C sshd")
    assert code == 0 and out.split()[0] == "learner" and "root" not in out
    # A key that was not seeded is refused.
    code, _, err = labs.sh("root-a", "cli", f"""
        ssh-keygen -q -t ed25519 -N '' -f /tmp/other
        ssh -i /tmp/other -o BatchMode=yes -o StrictHostKeyChecking=yes \\
            -o IdentitiesOnly=yes -p 2222 learner@{SERVER} true
    """)
    assert code == 255 and "Permission denied (publickey" in err


def test_the_root_is_writable_only_where_the_lab_user_may_write(
    labs: Labs, ssh_rootfs: Path,
) -> None:
    # The learner-owned seed in /etc is the learner's to edit; root's files are not.
    code, out, err = labs.sh("root-a", "srv", f"""
        echo 'PermitRootLogin no' >> {LAB_CONF} && cat {LAB_CONF}
        stat -c '%U %a' {LAB_CONF} {NOTE} /etc/forge-lab /etc/forge-lab/notes
        hello
    """)
    assert code == 0, err
    assert out.split("\n")[:2] == ["# the learner hardens sshd here", "PermitRootLogin no"]
    assert out.split("\n")[2:7] == ["learner 644", "root 644", "root 755", "root 755", "hi"]
    for attempt in (f"echo x >> {NOTE}", "echo x >> /etc/ssh/sshd_config",
                    "touch /etc/forge-new", f"rm -f {LAB_CONF}", "mkdir /usr/forge",
                    f"ln -sf /etc/shadow {LAB_CONF}.d"):
        code, _, err = labs.sh("root-a", "srv", attempt)
        assert code != 0 and "Permission denied" in err, attempt
    # The edit is this host's alone: the other host on the same image, and the image.
    code, out, _ = labs.sh("root-a", "cli", f"cat {LAB_CONF}; ls /etc/forge-lab")
    assert code != 0 and out == ""
    assert not (ssh_rootfs / LAB_CONF.lstrip("/")).exists()
    # A seed on an image symlink lands inside the host's tree (/etc/localtime points at
    # /usr/share/zoneinfo/Etc/UTC): the machine's zone file and the image are untouched.
    _, out, _ = labs.sh("root-a", "srv", "cat /usr/share/zoneinfo/Etc/UTC")
    assert out == "not a zone\n"
    assert b"not a zone" not in Path("/usr/share/zoneinfo/Etc/UTC").read_bytes()
    assert b"not a zone" not in (ssh_rootfs / "usr/share/zoneinfo/Etc/UTC").read_bytes()
    # Checks see the host's root as it is now (read-only): the learner's edit is graded.
    check = labs.rt.run_check("root-a", "srv", ["sh", "-c", f"cat {LAB_CONF}; "
                                                 f"echo x >> {LAB_CONF}"])
    assert "PermitRootLogin no" in check.stdout_text
    assert "cannot create" in check.stderr_text
    _, out, _ = labs.sh("root-a", "srv", f"cat {LAB_CONF}")
    assert out == "# the learner hardens sshd here\nPermitRootLogin no\n"


def test_what_a_host_writes_into_its_root_counts_against_the_labs_disk(labs: Labs) -> None:
    code, out, _ = labs.sh("root-b", "box", "df -k --output=size / | tail -n 1")
    assert (code, out.strip()) == (0, str(16 * 1024))
    code, _, err = labs.sh("root-b", "box", f"head -c 24M /dev/zero > {BIG}")
    assert code != 0 and "No space left on device" in err
    code, out, _ = labs.sh("root-b", "box", f"stat -c %s {BIG}")
    assert code == 0 and 8 << 20 < int(out) < 16 << 20


@pytest.mark.parametrize(("path", "image", "owner", "message"), [
    ("/proc/forge", "ssh", None, "is under one of /proc, /sys, /dev, /run, /tmp, /var/tmp"),
    ("/run/sshd/x", "ssh", None, "is under one of /proc"),
    ("/etc/passwd", "ssh", "learner", "is a lab identity file"),
    ("/opt/forge/grade", "ssh", "learner", "owner learner is not possible"),
    ("/etc/motd", None, None, "is outside the writable dirs"),
    ("/etc/motd", "host", None, "is outside the writable dirs"),
])
def test_a_seed_where_none_may_go_is_refused_naming_the_field(
    path: str, image: str | None, owner: str | None, message: str,
) -> None:
    spec = LabSpec("bad", [SubnetSpec("a", "10.83.0.0/24")], [
        HostSpec("box", networks=[("a", None)], image=image, files={path: "x"},
                 owners={path: owner} if owner else {})])
    with pytest.raises(SpecError) as err:
        plan_lab(spec)
    assert err.value.field == f"hosts[0].files[{path!r}]" and message in str(err.value)


def test_a_seed_led_by_an_image_link_under_run_is_refused_and_nothing_stays(
    labs: Labs,
) -> None:
    # /var/run is /run in the image (a link): the seed would vanish under the /run tmpfs.
    spec = LabSpec("root-c", [SubnetSpec("a", "10.84.0.0/24")], [
        HostSpec("box", networks=[("a", None)], image="ssh", files={"/var/run/x.pid": "1"})])
    with pytest.raises(SpecError) as err:
        labs.rt.create(spec)
    assert err.value.field == "hosts[0].files['/var/run/x.pid']"
    assert "resolves in the image to /run/x.pid" in str(err.value)
    assert not any(info.lab_id == "root-c" for info in labs.rt.list())
