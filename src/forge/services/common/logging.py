"""JSON logs with a correlation id, scrubbed of secrets and tokens."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "forge_request_id", default=None
)

_JWS_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}")
_BEARER_PATTERN = re.compile(r"(?i)(bearer\s+)\S+")
# Forge's own credentials: API keys (fgk_) and cohort invite codes (fgi_, which travel in
# the /join/<code> path and so reached the access log).
_CREDENTIAL_PATTERN = re.compile(r"\bfg[ki]_[A-Za-z0-9_-]{8,}")
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "color_message",
}


class Redactor:
    """Removes known secret values, bearer credentials, Forge API keys and invite codes, and
    JWS tokens from text."""

    def __init__(self, secrets: Iterable[bytes] = ()) -> None:
        values = sorted({s.decode(errors="ignore") for s in secrets if len(s) >= 4}, key=len)
        self._secrets = [v for v in reversed(values) if v]

    def __call__(self, text: str) -> str:
        for value in self._secrets:
            if value in text:
                text = text.replace(value, "[redacted]")
        # Each pattern starts with letters it cannot match without ("bearer" in any case:
        # no other character folds to one of those under re.IGNORECASE; "fg"; "eyJ"): a
        # substring test skips a regex that would find nothing. Every log line redacts
        # each of its fields, so the regexes cost most of an access-log line's CPU.
        if "bearer" in text.lower():
            text = _BEARER_PATTERN.sub(r"\1[redacted]", text)
        if "fg" in text:
            text = _CREDENTIAL_PATTERN.sub("[credential]", text)
        if "eyJ" in text:
            text = _JWS_PATTERN.sub("[token]", text)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, request id, extras."""

    def __init__(self, service: str, redactor: Redactor) -> None:
        super().__init__()
        self._service = service
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)
        clean = {k: self._redact(v) if isinstance(v, str) else v for k, v in entry.items()}
        return json.dumps(clean, default=str, ensure_ascii=False)


class TlsEofNotice(logging.Filter):
    """Drops asyncio's "returning true from eof_received() has no effect when using ssl",
    logged at every close of a TLS connection by nats-py's stream protocol (the bus speaks
    TLS): a fact of asyncio's TLS transport, nothing an operator could act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received()" not in record.getMessage()


TLS_EOF_NOTICE = TlsEofNotice()


def quiet_tls_eof_notice() -> None:
    """Install TlsEofNotice on asyncio's logger (once: a filter is added once)."""
    logging.getLogger("asyncio").addFilter(TLS_EOF_NOTICE)


def configure_logging(service: str, secrets: Iterable[bytes] = (), level: str = "INFO") -> None:
    """Send every log record of the process to stderr as redacted JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, Redactor(secrets)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs requests
    logging.getLogger("alembic").setLevel(logging.WARNING)
    quiet_tls_eof_notice()
