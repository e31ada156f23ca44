"""Whether a host's service command and environment fit in one exec.

The kernel refuses an exec whose single argument or environment string reaches 128 KiB
(E2BIG). A fresh lab would fail loudly, but a warm pool lab starts its service only after
the lab reports running, so an oversized value must be refused before any lab is built:
by `forge template check` on the values as written and by the runtime on the rendered ones.
The service command travels as one environment string, ``FG_CMD=COMMAND``, and each
environment variable as ``FGE_NAME=VALUE`` on its way to an exec (the runtime keeps them
off command lines, which every local user of the node can read).
"""

from __future__ import annotations

from collections.abc import Mapping

from forge.templates import dsl_limits as L

# The variable the runtime hands a host's service command in (counted with the command).
COMMAND_VAR = "FG_CMD"
# The prefix each environment variable carries on its way to a service's, exec's,
# terminal's or check's command (the root steps before it, a host's init among them,
# never see the host's own names): counted, as the longest form a value travels in.
ENV_PREFIX = "FGE_"


def _size(text: str) -> int | None:
    """Bytes `text` takes in an exec (as os.fsencode writes it); None: not encodable."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return None


# Names a host may not set: those the runtime's own shells use (the init's script, the
# cgroup join), and those a shell will not pass on as given (dash refuses a non-numeric
# OPTIND; bash keeps its read-only names and replaces or drops its dynamic ones, on an
# image whose /bin/sh is bash; the service's shell, which sets the host's variables, would
# split the service command with a host's IFS, where a shell ignores an inherited one).
RESERVED_NAMES = frozenset({
    COMMAND_VAR, "FG_CG", "cmd", "go", "nl", "OPTIND", "IFS",
    "UID", "EUID", "PPID", "SHELLOPTS", "BASHOPTS", "BASH_VERSINFO",
    "RANDOM", "SRANDOM", "SECONDS", "LINENO", "HISTCMD", "BASHPID", "EPOCHSECONDS",
    "EPOCHREALTIME", "BASH_SUBSHELL", "GROUPS", "FUNCNAME", "DIRSTACK", "BASH_ARGV",
    "BASH_ARGC", "BASH_LINENO", "BASH_SOURCE", "BASH_CMDS", "BASH_ALIASES",
})
# Variables a shell sets for itself; the renaming shell drops them unless the host sets them.
SHELL_OWN = ("PWD", "OLDPWD", "SHLVL")


def _renaming(names: list[str]) -> str:
    """The start of a lab user's shell that sets the host variables ``names`` from their
    ``FGE_`` forms and drops those (and the shell's own variables the host does not set)."""
    own = [n for n in SHELL_OWN if n not in names]
    exports = " ".join(f'{n}="${ENV_PREFIX}{n}"' for n in names)
    staged = " ".join(ENV_PREFIX + n for n in names)
    drop = f"unset {' '.join(own)}; " if own else ""
    path = "" if "PATH" in names else "unset PATH; "
    return f"{drop}{path}export {exports} && unset {staged}"


def rename_script(names: list[str]) -> str:
    """The lab user's shell script (one exec string, so counted here) that gives an exec's,
    terminal's or check's command exactly the host variables ``names``, read from their
    ``FGE_`` forms, which it drops (runtime.local.execute.env_sh runs it)."""
    return f'{_renaming(names)} && exec "$@"'


def service_script(names: list[str]) -> str:
    """The lab user's shell script running a host's service: the host variables ``names``
    from their ``FGE_`` forms, as ``rename_script``, then the command taken from FG_CMD,
    which it drops (runtime.local.bwrap_args.INIT_SH starts it; one exec string, counted
    here, and the longer of the two)."""
    return f'{_renaming(names)} && eval "unset {COMMAND_VAR}; ${COMMAND_VAR}"'


def exec_size_problems(environment: Mapping[str, str],
                       command: str | None) -> list[tuple[str, str]]:
    """(field, message) for every value that would not fit: ``environment.NAME``,
    ``command`` or, for the total, ``environment``; and for a name a host may not set."""
    out: list[tuple[str, str]] = []
    for name in environment:
        if name in RESERVED_NAMES or name.startswith(ENV_PREFIX):
            out.append((f"environment.{name}", f"is reserved (names starting {ENV_PREFIX}, "
                        f"and {', '.join(sorted(RESERVED_NAMES))})"))
    # with the variables every host gets (runtime.local.bwrap_args.host_env)
    names = list(dict.fromkeys([*environment, "PATH", "HOME", "LANG", "HOSTNAME", "TERM"]))
    script = _size(service_script(names))
    if script is not None and script > L.MAX_EXEC_STRING_BYTES:
        out.append(("environment", f"has too many or too long names: giving them to a "
                    f"service takes {script} bytes in one exec string, at most "
                    f"{L.MAX_EXEC_STRING_BYTES}"))
    total = 0
    items = [(f"environment.{name}", f"{ENV_PREFIX}{name}={value}")
             for name, value in environment.items()]
    if command is not None:
        items.append(("command", f"{COMMAND_VAR}={command}"))
    for field, text in items:
        size = _size(text)
        if size is None:
            out.append((field, "is not encodable text (a lone surrogate)"))
            continue
        total += size
        if size > L.MAX_EXEC_STRING_BYTES:
            out.append((field, f"is {size} bytes; one exec string holds at most "
                               f"{L.MAX_EXEC_STRING_BYTES} (the kernel's limit)"))
    if total > L.MAX_HOST_EXEC_BYTES and not out:
        out.append(("environment", f"environment and command are {total} bytes together; "
                                   f"at most {L.MAX_HOST_EXEC_BYTES} per host"))
    return out
