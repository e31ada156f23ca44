"""`forge lab new NAME`: the files of a new lab, valid and passing `forge lab test` as made.

Written: ``NAME.yaml`` (template: story, one task graded by two checks, a per-scenario
variable, a host on the shipped ``base`` image), ``NAME.lab-test.yaml`` (test plan),
``NAME.solution.sh`` (reference solution), ``NAME.partial.sh`` (a partial solution) in
the template directory, and ``NAME.yaml`` (an image definition stub extending ``base``)
in the image directory. Nothing is overwritten: if any file exists, none is written.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from forge.content import TEMPLATES, content_path
from forge.errors import ForgeError
from forge.images.definitions import DEFAULT_IMAGE, load_definition_file
from forge.templates.registry import LAB_TEST_SUFFIX

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]\Z")

def shipped_labs() -> set[str]:
    """The shipped templates' names (a lab copied next to them, docs/authoring.md section 7,
    would replace one of the same name)."""
    return {p.name.removesuffix(".yaml") for p in content_path(TEMPLATES).glob("*.yaml")
            if not p.name.endswith(LAB_TEST_SUFFIX)}


def reserved_names() -> set[str]:
    """Names a new lab may not take: the shipped images' (its image shares the lab's
    name), ``host``, the machine userland's, and the shipped labs'."""
    return {"host", *(p.stem for p in content_path("images").glob("*.yaml")), *shipped_labs()}

TEMPLATE = """\
# {name}: scaffolded by `forge lab new`; docs/authoring.md walks through every field.
apiVersion: frostgate.forge/v1
kind: ScenarioTemplate
metadata:
  name: {name}
  labels: ["class:netplus", "tier:foundation", "owner:forge", "lab:{name}"]
  # What the track card shows: say what the lab is, how hard and how long.
  title: Recover the mission code
  summary: >-
    A colleague left a mission brief on your workstation before going on leave; find the
    mission code in it and hand it in, exactly as written.
  difficulty: beginner
  estimated_minutes: 10
  objectives:
    - Find and read a file on a Linux host
    - Write an answer file exactly as asked
spec:
  description: |
    # Recover the mission code

    You are the on-call technician. A colleague left this lab's mission brief in
    `/srv/mission/brief.txt` on your workstation (this terminal) before going on leave.

    ## Your task

    Read the brief and write **only the mission code** it contains, on one line, to
    `/workspace/answer.txt`.

    Grading: the answer file exists and is not empty (1/4), and it holds this lab's
    mission code (3/4). Press **Submit** when done.
  limits: {{cpu: 0.5, memory_mb: 128, pids: 64, attacker_max_exploits: 0, timeout_minutes: 30}}
  network:
    subnets:
      - {{name: lan, cidr: 10.70.1.0/24}}
    egress: deny
  variables:
    code: {{kind: token, length: 16}}
  assets:
    containers:
      - name: learner
        # A shipped image; after `forge image build {name}`, `image: {name}` uses yours.
        image: base
        access: learner            # the learner gets a terminal on this host
        networks: [{{subnet: lan, address: 10.70.1.10}}]
        files:
          - path: /srv/mission/brief.txt
            content: |
              Mission brief (do not share)
              mission code: {{{{ vars.code }}}}
  successCriteria:
    - id: answer-written
      description: /workspace/answer.txt exists and is not empty.
      weight: 1
      checks:
        - container: learner
          command: ["/usr/bin/test", "-s", "/workspace/answer.txt"]
          timeout_seconds: 5
          expect: {{exit_code: 0}}
    - id: code-recovered
      description: /workspace/answer.txt holds this lab's mission code.
      weight: 3
      checks:
        - container: learner
          command:
            - /bin/sh
            - -c
            - read -r want; test "$(tr -d '[:space:]' < /workspace/answer.txt)" = "$want"
          stdin: "{{{{ vars.code }}}}\\n"
          timeout_seconds: 5
          expect: {{exit_code: 0}}
"""

LAB_TEST = """\
# How `forge lab test {name}` proves the lab (docs/authoring.md, "The test plan").
host: learner                      # where solutions and attempts are typed
solution: {{file: {name}.solution.sh}}
answers:                           # files graders read; the generic attempts target them
  - {{path: /workspace/answer.txt}}
partials:
  - {{name: empty-answer, file: {name}.partial.sh, expected_score: 0.25}}
gaming:
  - name: guessed-code
    criterion: code-recovered
    script: |
      echo 0123456789abcdef > /workspace/answer.txt
  - name: whole-brief
    criterion: code-recovered
    script: |
      cp /srv/mission/brief.txt /workspace/answer.txt
"""

SOLUTION = """\
#!/bin/bash
# Reference solution of {name}, typed in the learner's terminal: it reads the value from
# the lab, never from the template.
set -euo pipefail
awk -F': ' '/^mission code:/ {{print $2}}' /srv/mission/brief.txt > /workspace/answer.txt
cat /workspace/answer.txt
"""

PARTIAL = """\
#!/bin/bash
# A partial solution of {name}: an answer file, but not the code (earns 1/4).
set -euo pipefail
echo "I could not find it" > /workspace/answer.txt
"""

IMAGE = """\
# Image of the {name} lab: `base` plus what your lab needs (docs/images.md).
# Build it with `FORGE_IMAGE_DIR={image_dir} forge image build {name}`, then set
# `image: {name}` in the template (the services and `forge lab test` need that
# FORGE_IMAGE_DIR too; it replaces the shipped images: copy base.yaml and the others
# your hosts use into it).
name: {name}
description: The base userland for the {name} lab.
suite: bookworm
packages:
{packages}
"""


_ENV = {"--dir": "FORGE_TEMPLATE_DIR", "--image-dir": "FORGE_IMAGE_DIR"}


class ScaffoldError(ForgeError):
    """A bad lab name or a file that already exists."""


def check_name(name: str) -> str:
    """`name` if it can name a lab: 3-32 of a-z, 0-9 and inner dashes, not reserved."""
    if not NAME_RE.fullmatch(name) or "--" in name:
        raise ScaffoldError("invalid_lab_name", 422,
                            f"name: {name!r} must be 3-32 characters of a-z, 0-9 and single "
                            "inner dashes, starting with a letter")
    if name in shipped_labs():
        raise ScaffoldError("invalid_lab_name", 422,
                            f"name: {name!r} is taken by a shipped lab; choose another")
    if name in reserved_names():
        raise ScaffoldError("invalid_lab_name", 422,
                            f"name: {name!r} is reserved (a shipped image)")
    return name


def scaffold(name: str, templates_dir: Path, images_dir: Path) -> list[Path]:
    """Write the new lab's files; ScaffoldError (and nothing written) if any exists, or
    if a directory is the shipped one (the default without FORGE_TEMPLATE_DIR and
    FORGE_IMAGE_DIR): a draft there is in the catalog every service offers."""
    check_name(name)
    for option, given, shipped in (("--dir", templates_dir, TEMPLATES),
                                   ("--image-dir", images_dir, "images")):
        if given.resolve() == content_path(shipped).resolve():
            raise ScaffoldError("shipped_content_dir", 422,
                                f"{option}: {given} holds the shipped {shipped}, which every "
                                "service loads; scaffold into a directory of your own "
                                f"({option} or {_ENV[option]}) and ship it as "
                                "docs/authoring.md section 7 says")
    files = {
        templates_dir / f"{name}.yaml": TEMPLATE,
        templates_dir / f"{name}{LAB_TEST_SUFFIX}": LAB_TEST,
        templates_dir / f"{name}.solution.sh": SOLUTION,
        templates_dir / f"{name}.partial.sh": PARTIAL,
        images_dir / f"{name}.yaml": IMAGE,
    }
    existing = [str(p) for p in files if p.exists() or p.is_symlink()]
    if existing:
        raise ScaffoldError("lab_exists", 409,
                            f"not overwriting: {', '.join(existing)} already exist(s)")
    base = load_definition_file(content_path("images") / f"{DEFAULT_IMAGE}.yaml")
    base_packages = "\n".join(f"  - {p}" for p in base.packages)
    written: list[Path] = []
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as fh:
            fh.write(text.format(name=name, packages=base_packages,
                                 image_dir=shlex.quote(str(images_dir))))
        written.append(path)
    return written
