"""One output style for `forge … list` commands: a rich table for people, `--json` for machines.

Tables have no box lines and start at column 0, so a row can be found with `startswith` and
read with `grep`; piped output is never wrapped (a script gets whole ids and URLs). Cells are
plain text (never rich markup), so a subject such as ``[red]`` prints as typed, and control
characters in them (terminal escapes, newlines: an error text may quote what a client sent)
are shown escaped, so a cell can neither drive the operator's terminal nor forge a row.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable, Sequence

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

JSON_OPTION = typer.Option(False, "--json", help="Machine-readable JSON instead of a table.")
_PIPED_WIDTH = 100_000  # piped output: as wide as the rows need, never wrapped


def print_json(payload: object) -> None:
    """`payload` as indented JSON on stdout (the `--json` form of every list command)."""
    typer.echo(json.dumps(payload, indent=2))


def printable(text: str) -> str:
    """`text` with every non-printable character shown as a Python escape (``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table of `columns` and `rows`: styled on a terminal, plain aligned text when piped."""
    table = Table(*columns, box=None, pad_edge=False, show_edge=False,
                  header_style="bold" if sys.stdout.isatty() else "")
    for row in rows:
        table.add_row(*(Text(printable(value)) for value in row))
    if sys.stdout.isatty():
        Console(highlight=False, emoji=False).print(table)
        return
    console = Console(width=_PIPED_WIDTH, highlight=False, emoji=False, color_system=None)
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        typer.echo(line.rstrip())


def cell(value: object, suffix: str = "") -> str:
    """A table cell: `-` for a missing value, else the value and its unit."""
    return "-" if value is None or value == "" else f"{value}{suffix}"


def keep_stdout_private(what: str) -> None:
    """Make the file stdout is redirected to (`forge secrets generate > forge.env`) readable
    by its owner only before ``what`` (secrets) is written: the shell creates it under the
    umask (0644 under the usual 022), so every local user could read them. A file of
    another user (one planted at that path, e.g. in /tmp) is refused (exit 2) and nothing is
    written: its owner could read them. A terminal or a pipe is left alone."""
    try:
        fd = sys.stdout.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError, AttributeError):  # no real descriptor (captured output)
        return
    if not stat.S_ISREG(st.st_mode):
        return
    mode, me = stat.S_IMODE(st.st_mode), os.geteuid()
    if st.st_uid != me:
        typer.echo(f"error: stdout is a file of uid {st.st_uid} (mode {mode:o}), not of uid "
                   f"{me}: that user could read {what}; nothing was written. Write "
                   "them to a new file of your own", err=True)
        raise typer.Exit(2)
    if mode & 0o077:
        os.fchmod(fd, mode & 0o700)
