"""Resolving one image reads only its own definition, and again only once it changed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from forge.images.lookup import load_named


def test_one_definition_is_read_and_reread_when_edited(tmp_path: Path) -> None:
    path = tmp_path / "tool.yaml"
    path.write_text("name: tool\npackages: [bash]\n")
    first = load_named("tool", tmp_path)
    assert first is not None and first.packages == ("bash",)
    assert load_named("tool", tmp_path) is first  # unchanged: not parsed again
    path.write_text("name: tool\npackages: [bash, curl]\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    edited = load_named("tool", tmp_path)
    assert edited is not None and edited.packages == ("bash", "curl")
    assert load_named("absent", tmp_path) is None


def test_a_stop_signal_to_the_service_group_does_not_change_the_image_key() -> None:
    # A service stopped by `forge up` or systemd gets SIGTERM on its whole process group
    # and drains for a moment. Before: a lab launching then had its `mmdebstrap --version`
    # killed too, the key became "unknown" (cached for the process), and the lab failed as
    # "image base is not built" although it was (the rotation drill's failure). Now the
    # probe runs in its own session, and a probe that gives no answer is never a key.
    code = (
        "import os, signal, threading, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: None)  # a service drains on SIGTERM\n"
        "from forge.images import lookup\n"
        "def stop():\n"
        "    time.sleep(0.03)\n"
        "    os.killpg(0, signal.SIGTERM)\n"
        "threading.Thread(target=stop).start()\n"
        "time.sleep(0.01)\n"
        "print(lookup.tool_identity()[0])\n")
    version = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[-1]
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             start_new_session=True, timeout=60, check=False)
        assert out.stdout.strip() == version, out.stderr[-500:]
