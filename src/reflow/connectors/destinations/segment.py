"""Segment: the HTTP Tracking API's ``/v1/batch``, on the SaaS kit.

Objects:

* ``identify`` — upsert: the sync key's value is the ``userId`` (``anonymousId`` when the
  key is ``anonymous_id``); every other mapped field is a trait.
* ``group`` — upsert: the sync key's value is the ``groupId``; ``user_id`` (or
  ``anonymous_id``) says who belongs to it; other fields are the group's traits.
* ``track`` — append: ``event`` (the event name, required), ``user_id`` or
  ``anonymous_id``, ``timestamp``; every other field is a property.

Segment keeps no record to update or delete: identify and group merge traits, so a
resent record is harmless. Each message carries a ``messageId`` derived from the sync,
the run and the record's key, so a batch resent after a failure is deduplicated by
Segment. Limits: 500 KB a batch request and 32 KB a message; a record whose message is
larger is rejected before sending, with its size.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from reflow.connectors.base import (
    Action,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationField,
    DestinationObject,
    RejectedRecord,
)
from reflow.connectors.saas.auth import Auth, BasicAuth
from reflow.connectors.saas.connector import (
    Call,
    SaasDestination,
    SaasWriter,
    Vendor,
    encode_json,
)
from reflow.connectors.saas.ratelimit import Limit

PRODUCTION_URL = "https://api.segment.io"
MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_BYTES = 32 * 1024
#: Room for ``{"batch":[...]}`` and the commas between messages.
_ENVELOPE = 64
_NAMESPACE = uuid.UUID("5b9a7c1e-6d0e-4b5e-9a53-2f1c7d3e8a10")


class SegmentConfig(ConnectorConfig):
    write_key: SecretStr = Field(
        title="Write key",
        description="The write key of an HTTP API source (Connections > Sources > the source "
        "> Settings > API Keys).")
    base_url: str | None = Field(
        None, title="API URL",
        description=f"Default {PRODUCTION_URL}; EU workspaces use "
        "https://events.eu1.segmentapis.com.")

    def identifying_value(self) -> str | None:
        return self.base_url or PRODUCTION_URL


def _field(name: str, type_: str = "string", *, identifier: bool = False,
           required: bool = False) -> DestinationField:
    return DestinationField(name, name.replace("_", " ").title(), type_,
                            identifier=identifier, required=required)


OBJECTS = (
    DestinationObject("identify", "User (identify)", ("upsert",),
                      (_field("user_id", identifier=True), _field("anonymous_id", identifier=True),
                       _field("email"), _field("name")), allow_custom_fields=True),
    DestinationObject("group", "Group (group)", ("upsert",),
                      (_field("group_id", identifier=True), _field("user_id", required=True),
                       _field("anonymous_id"), _field("name")), allow_custom_fields=True),
    DestinationObject("track", "Event (track)", ("append",),
                      (_field("event", required=True), _field("user_id"),
                       _field("anonymous_id"), _field("timestamp", "date_time")),
                      allow_custom_fields=True),
)


class SegmentWriter(SaasWriter):
    """Messages are encoded first (their size decides the batches), then packed."""

    def calls(self, records: list[dict[str, Any]], action: Action) -> Iterator[Call | Any]:
        self._messages: dict[int, bytes] = {}
        batch: list[int] = []
        size = _ENVELOPE
        for index, record in enumerate(records):
            message = encode_json(self._message(record))
            if len(message) > MAX_MESSAGE_BYTES:
                yield RejectedRecord(index, f"Segment accepts messages of at most 32 KB; this "
                                     f"record's is {len(message) / 1024:.1f} KB")
                continue
            if batch and size + len(message) + 1 > MAX_BATCH_BYTES:
                yield self.call_for(records, batch, action)
                batch, size = [], _ENVELOPE
            self._messages[index] = message
            batch.append(index)
            size += len(message) + 1
        if batch:
            yield self.call_for(records, batch, action)

    def call_for(self, records: list[dict[str, Any]], indices: list[int], action: Action) -> Call:
        body = b'{"batch":[' + b",".join(self._messages[i] for i in indices) + b"]}"
        return Call("POST", "/v1/batch", indices, content=body)

    def _message(self, record: dict[str, Any]) -> dict[str, Any]:
        kind, key = self.object.full_name, self.ctx.key_field
        message: dict[str, Any] = {"type": kind, "messageId": self._message_id(record[key])}
        rest = {k: v for k, v in record.items()
                if not (v is None and k in self.ctx.keep_on_null)}
        if kind == "identify":
            rest.pop(key)
            message["anonymousId" if key == "anonymous_id" else "userId"] = record[key]
            message["traits"] = rest
            return message
        who = {"userId": rest.pop("user_id", None), "anonymousId": rest.pop("anonymous_id", None)}
        message.update({k: v for k, v in who.items() if v is not None})
        if kind == "group":
            message["groupId"] = rest.pop(key)
            message["traits"] = rest
            return message
        message["event"] = rest.pop("event", None)
        if rest.get("timestamp") is not None:
            message["timestamp"] = rest.pop("timestamp")
        message["properties"] = rest
        return message

    def _message_id(self, key: Any) -> str:
        """The same record in the same run is the same message: a resent batch is
        deduplicated by Segment; the next run's message is a new one."""
        name = f"{self.ctx.sync_id}/{self.ctx.run_id}/{self.object.full_name}/{key}"
        return str(uuid.uuid5(_NAMESPACE, name))


class SegmentDestination(SaasDestination):
    service_name = "segment"
    label = "Segment"
    documentation_slug = "segment"
    config_model: ClassVar[type[ConnectorConfig]] = SegmentConfig
    # No hard limit is documented; Segment asks for contact above ~500 requests a second.
    vendor = Vendor("Segment", PRODUCTION_URL, limits=(Limit(500, 1.0, "batch"),),
                    batch_size=1000, concurrency=4)
    capabilities = DestinationCapabilities(operations=("upsert", "append"), batch_size=5_000,
                                           sync_null_values=True)
    writer_class = SegmentWriter
    config: SegmentConfig

    def make_auth(self, http: httpx.Client) -> Auth:
        return BasicAuth(self.config.write_key.get_secret_value())

    def verify(self) -> None:
        # An empty batch is authenticated and records nothing.
        self.client.checked("POST", "/v1/batch", json={"batch": []})

    def load_objects(self) -> list[DestinationObject]:
        return list(OBJECTS)

    def error_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            return f"Segment: {body['message']}"
        return f"Segment answered HTTP {response.status_code}: {response.text[:500]}"
