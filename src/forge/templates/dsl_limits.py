"""Hard limits and vocabularies of the Scenario DSL, in one place.

These are the platform's absolute ceilings: a template beyond them is invalid whatever the
plan. The policy gates (policies/*.rego) apply the tighter per-plan and per-tier limits.
"""

from __future__ import annotations

import re
from typing import Final

# One bound for a hint's cost, which the offline verifier checks too.
from forge_verify.score import MAX_HINT_COST as MAX_HINT_COST

API_VERSION: Final = "frostgate.forge/v1"
KIND: Final = "ScenarioTemplate"

# Hard caps per lab host (the runtime applies spec.limits to each host's cgroup).
MAX_CPU: Final = 4.0
MAX_MEMORY_MB: Final = 8192
MAX_PIDS: Final = 4096
MAX_TIMEOUT_MINUTES: Final = 480
MAX_ATTACKER_EXPLOITS: Final = 100
MAX_CHECK_TIMEOUT_SECONDS: Final = 300
MAX_CONTAINERS: Final = 16
MAX_READY_PORTS: Final = 16  # TCP ports one host declares ready_ports
MAX_SUBNETS: Final = 8
MAX_FILE_BYTES: Final = 256 * 1024
MAX_DISK_MB: Final = 4096
DEFAULT_DISK_MB: Final = 64
MAX_CHECK_STDIN: Final = 64 * 1024
# A host's service command and each `NAME=value` of its environment reach the kernel as one
# exec string: Linux refuses a string of 32 pages or more (MAX_ARG_STRLEN, 128 KiB with its
# NUL) with E2BIG. A warm pool lab starts its service after the lab reports running, so
# the bound is checked before a lab is built, not found when the exec fails. All of them
# together stay far below the exec size limit (ARG_MAX is 2 MiB with an 8 MiB stack).
MAX_EXEC_STRING_BYTES: Final = 128 * 1024 - 1
MAX_HOST_EXEC_BYTES: Final = 256 * 1024
# A check's argv, and the checks of a whole template: every result travels in one
# completion event (forge.bus.contracts), so the template is held to what that event carries.
MAX_ARG_CHARS: Final = 8192
MAX_ARGV: Final = 64
MAX_CHECKS_TOTAL: Final = 256
# The host a learner's terminal opens on; a live check must run elsewhere.
LEARNER_HOST: Final = "learner"

# Catalog entry of a template (metadata): what the track cards show learners.
MAX_TITLE_CHARS: Final = 80
MAX_SUMMARY_CHARS: Final = 600
MIN_ESTIMATED_MINUTES: Final = 5
MAX_ESTIMATED_MINUTES: Final = 480
MAX_OBJECTIVES: Final = 8
MAX_OBJECTIVE_CHARS: Final = 140
MAX_HINTS: Final = 16
MAX_HINT_CHARS: Final = 1000

KNOWN_TRACKS: Final = ("netplus", "ccna", "cissp")
KNOWN_TIERS: Final = ("foundation", "intermediate", "advanced")

# Template names double as registry keys; they can never contain a path separator.
NAME_PATTERN: Final = r"^[a-z][a-z0-9-]{0,62}$"
NAME_RE: Final = re.compile(NAME_PATTERN)
# Containers, subnets, criteria ids and variables are short identifiers too.
IDENT_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,31}$"
VAR_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,31}$"
ENV_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

# Seeded files may only land in these writable trees (the rest of a host is read-only).
WRITABLE_DIRS: Final = ("/home", "/workspace", "/srv", "/opt/forge")
# On a host with an image (its own writable root) a seed may go anywhere except into
# these: kernel and scratch filesystems mounted over the image, and the identity files the
# platform binds over /etc. /opt/forge stays the read-only seeds' tree.
IMAGE_SEED_FORBIDDEN: Final = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp")  # noqa: S108
IDENTITY_FILES: Final = ("/etc/passwd", "/etc/group", "/etc/hosts", "/etc/resolv.conf")
# Where the platform's own programs (bwrap, setpriv, nsenter's targets) and the dynamic
# loader's configuration live in a host's root: a learner-owned file there could replace
# what the platform runs as root when it enters the host. Root seeds only.
PLATFORM_PROGRAM_PATHS: Final = (
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
    "/etc/ld.so.preload", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/ld.so.cache",
)
# Capabilities that override file ownership or permissions, or the uid: with any of them
# the lab user could rewrite root's files in its host's writable root (including programs
# the platform runs there as root). The runtime refuses them on every host, whatever the
# capabilities gate (which already denies them) is configured to allow.
FILE_OWNERSHIP_CAPS: Final = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "SETFCAP",
    "LINUX_IMMUTABLE", "MKNOD", "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO",
})
# The capability every service process of a lab keeps and no learner process has: the
# kernel lets a process read or write another's memory (/proc/PID/mem,
# process_vm_writev), descriptors or environment only if it holds all of that process's
# capabilities, so a learner cannot take over a service (same uid, same pid namespace)
# and outlive the seal inside it. Its own power is harmless (alarm timers that would
# wake a suspended machine). No host may be approved it.
SERVICE_MARK_CAP: Final = "WAKE_ALARM"
READONLY_SEED_DIR: Final = "/opt/forge"
# ``image: host``: the machine's read-only userland (images.definitions.HOST_USERLAND),
# for test fixtures and development only; a container naming no image runs on
# DEFAULT_IMAGE (images.definitions.DEFAULT_IMAGE), never on the server's userland.
HOST_IMAGE: Final = "host"
DEFAULT_IMAGE: Final = "base"

# Linux capabilities (capabilities(7), kernel 6.x), written without the CAP_ prefix.
LINUX_CAPABILITIES: Final = frozenset(
    {
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYSLOG",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "WAKE_ALARM",
    }
)
