"""The event envelope: compact JSON bodies, the de-duplication header, and `Event`.

Publishers encode with `encode_event`; consumers hand handlers an `Event`. A service that
stored a dead-lettered event (subject, raw bytes, msg_id) rebuilds it with `Event.replay`
to reprocess it through the same handler.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import api

MSG_ID_HEADER = api.Header.MSG_ID.value  # "Nats-Msg-Id"
CONTENT_TYPE = "application/json"


def encode_event(data: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted UTF-8 JSON; raises `TypeError` naming what cannot be encoded."""
    if not isinstance(data, Mapping):
        raise TypeError(f"data: an event must be a JSON object, got {type(data).__name__}")
    try:
        return json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"data: not JSON-serialisable: {exc}") from exc


def decode_payload(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """Decode a body; the second value says why it is unusable (not JSON, not an object)."""
    try:
        decoded = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"payload: not valid JSON ({exc})"
    if not isinstance(decoded, dict):
        return {}, f"payload: expected a JSON object, got {type(decoded).__name__}"
    return decoded, None


@dataclass(frozen=True)
class Event:
    """One delivered event: decoded JSON body plus the JetStream facts about it."""

    subject: str
    data: dict[str, Any]
    raw: bytes
    msg_id: str | None
    stream_seq: int
    num_delivered: int
    published_at: datetime | None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_msg(cls, msg: Msg) -> tuple[Event, str | None]:
        """Build from a JetStream message; the second value is a payload error, if any."""
        md = msg.metadata
        headers = dict(msg.headers or {})
        data, error = decode_payload(msg.data)
        event = cls(
            subject=msg.subject,
            data=data,
            raw=bytes(msg.data),
            msg_id=headers.get(MSG_ID_HEADER),
            stream_seq=md.sequence.stream,
            num_delivered=md.num_delivered,
            published_at=md.timestamp,
            headers=headers,
        )
        return event, error

    @classmethod
    def replay(
        cls,
        subject: str,
        raw: bytes,
        *,
        msg_id: str | None = None,
        stream_seq: int = 0,
        published_at: datetime | None = None,
    ) -> Event:
        """Rebuild a stored event for reprocessing; `ValueError` if the body is unusable."""
        data, error = decode_payload(raw)
        if error is not None:
            raise ValueError(error)
        return cls(
            subject=subject,
            data=data,
            raw=bytes(raw),
            msg_id=msg_id,
            stream_seq=stream_seq,
            num_delivered=0,
            published_at=published_at,
        )


Handler = Callable[[Event], Awaitable[None]]
DeadLetterHook = Callable[[Event, str], Awaitable[None]]
