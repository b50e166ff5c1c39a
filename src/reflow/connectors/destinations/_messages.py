"""What the broker destinations (RabbitMQ, NATS, Redis Streams) share: the object a
message target is, and one JSON message per record."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from reflow.connectors.base import DestinationObject, RejectedRecord

#: What every broker destination supports: each is an event, never a merge.
BROKER_OPERATIONS: tuple[str, ...] = ("append", "upsert", "delete")


def broker_object(full_name: str) -> DestinationObject:
    """A message target: any field may be mapped, each record becomes one message."""
    return DestinationObject(
        full_name=full_name,
        label=full_name,
        supported_operations=BROKER_OPERATIONS,
        allow_custom_fields=True,
    )


@dataclass(frozen=True)
class Message:
    #: Index of the record within its batch.
    index: int
    #: The sync key value as text.
    key: str
    #: The record as a JSON object, UTF-8.
    body: bytes


def encode_messages(
    batch: pa.RecordBatch, key_field: str, omit_nulls: frozenset[str] = frozenset()
) -> tuple[list[Message], list[RejectedRecord]]:
    """One JSON message per record; records that cannot be sent are rejected. A null
    in ``omit_nulls`` (``sync_null_values: false``) is left out of the message, so a
    consumer merging messages keeps the value it has."""
    messages: list[Message] = []
    rejected: list[RejectedRecord] = []
    for index, row in enumerate(batch.to_pylist()):
        key = row.get(key_field)
        if key is None:
            rejected.append(RejectedRecord(index, f"the sync key {key_field!r} is null"))
            continue
        if omit_nulls:
            row = {k: v for k, v in row.items() if v is not None or k not in omit_nulls}
        try:
            body = json.dumps(row, default=_json_default, ensure_ascii=False, allow_nan=False)
        except ValueError as exc:  # NaN or Infinity: not representable in JSON
            rejected.append(RejectedRecord(index, f"cannot encode as JSON: {exc}"))
            continue
        messages.append(Message(index, key_text(key), body.encode()))
    return messages, rejected


def key_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(_json_default(value))
    except TypeError:  # numbers and anything else print as themselves
        return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        # As text, because a JSON number would go through a float and lose digits.
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
