"""Reading an identity configuration file (OIDC, LTI): bounded, then parsed as YAML.

Both files are read once at start by the services; a file that cannot be read, is too
large or is not YAML is refused with one line naming the file, raised as the caller's own
error type so the message reads like the rest of that file's checks. A file another local
user owns or may write is refused too (``trusted_file``): its issuers and platforms would
be theirs, to sign anyone in as staff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from forge.config.trusted_file import read_operator_file

MAX_FILE_BYTES = 256 * 1024


def read_yaml_file(path: Path, what: str, error: type[Exception]) -> Any:
    """The YAML document in ``path`` (at most MAX_FILE_BYTES); ``error`` names ``what``
    file is at fault when it cannot be read, is larger or is not YAML."""
    try:
        data, why = read_operator_file(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise error(f"cannot read {what} file {path}: {exc.strerror}") from None
    if why is not None:
        raise error(f"{what} file {path} {why}")
    if len(data) > MAX_FILE_BYTES:
        raise error(f"{what} file {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError:
        raise error(f"{what} file {path} is not valid YAML") from None
