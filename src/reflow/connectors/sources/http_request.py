"""HTTP Request source: JSON messages that Reflow itself receives, grouped in topics.

Census's "HTTP Request" connection. Messages are posted to Reflow's ingestion endpoint
and kept by the service; this connector reads them through a :class:`MessageStore`
the service attaches (``attach``), so it still imports nothing of the service.

Each topic reads as one relation, ``SELECT * FROM "topics"."<name>"``, whose columns
are the top-level keys of the topic's schema (inferred from its sample message).
Nested objects and arrays arrive as JSON text; keys a message carries that the schema
lacks are not read, and keys it lacks are null.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Protocol

import pyarrow as pa

from reflow.connectors.base import (
    Column,
    ConnectorConfig,
    SourceCapabilities,
    SourceConnector,
    TableRef,
    TestStep,
)
from reflow.connectors.errors import InvalidQuery, ObjectNotFound, TerminalError

SCHEMA = "topics"
_TOPIC_QUERY = re.compile(r'^\s*SELECT \* FROM "topics"\."((?:[^"]|"")+)"\s*;?\s*$', re.IGNORECASE)


class MessageStore(Protocol):
    """Where the service keeps one source's received messages."""

    def topic_schemas(self) -> dict[str, dict[str, str]]:
        """Topic name -> {field: Census type} for every topic of the source."""

    def sample(self, topic: str) -> dict[str, Any]:
        """The topic's sample message (decides integer vs float numbers)."""

    def payloads(self, topic: str, *, batch_size: int) -> Iterator[list[dict[str, Any]]]:
        """The topic's messages in arrival order, at most ``batch_size`` per list."""


class HttpRequestConfig(ConnectorConfig):
    """No settings: the messages are posted to Reflow (see ``/sources/{id}/topics``)."""


def arrow_type(census_type: str, sample_value: Any) -> pa.DataType:
    if census_type == "boolean":
        return pa.bool_()
    if census_type == "number":
        integral = isinstance(sample_value, int) and not isinstance(sample_value, bool)
        return pa.int64() if integral else pa.float64()
    return pa.string()


def _value(value: Any, type_: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_string(type_):
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if pa.types.is_boolean(type_):
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None  # a value of another type than the schema's: null, never a crash
    if pa.types.is_int64(type_):
        return int(value) if float(value).is_integer() else None
    return float(value)


class HttpRequestSource(SourceConnector):
    service_name = "http_request"
    label = "HTTP Request"
    documentation_slug = "http-request"
    config_model = HttpRequestConfig
    capabilities = SourceCapabilities(object_kinds=("topic",), batch_size=10_000)

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        self._store: MessageStore | None = None

    def attach(self, store: MessageStore) -> None:
        self._store = store

    def test_connection(self) -> list[TestStep]:
        return [TestStep("Verify connectivity", "success")]

    def _schemas(self) -> dict[str, dict[str, str]]:
        return self._store.topic_schemas() if self._store is not None else {}

    def list_tables(self) -> list[TableRef]:
        return [TableRef("", SCHEMA, name) for name in sorted(self._schemas())]

    def arrow_schema(self, topic: str) -> pa.Schema:
        schema = self._schemas().get(topic)
        if schema is None or self._store is None:
            raise ObjectNotFound(f"topic {topic!r} not found")
        sample = self._store.sample(topic)
        return pa.schema([(k, arrow_type(t, sample.get(k))) for k, t in schema.items()])

    def list_columns(self, table: TableRef) -> list[Column]:
        if table.schema != SCHEMA:
            raise ObjectNotFound(f"table {table.schema}.{table.name} not found")
        return [Column(f.name, _type_name(f.type)) for f in self.arrow_schema(table.name)]

    def table_query(self, table: TableRef) -> str:
        return f'SELECT * FROM "{SCHEMA}".{self.quote_identifier(table.name)}'

    def quote_identifier(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _topic_of(self, sql: str) -> str:
        match = _TOPIC_QUERY.match(sql)
        if match is None:
            raise InvalidQuery(
                'an HTTP Request source reads whole topics: SELECT * FROM "topics"."<topic>"'
            )
        return match.group(1).replace('""', '"')

    def query_columns(self, sql: str) -> list[Column]:
        return self.list_columns(TableRef("", SCHEMA, self._topic_of(sql)))

    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        topic = self._topic_of(sql)
        schema = self.arrow_schema(topic)
        assert self._store is not None
        size = batch_size or self.capabilities.batch_size
        try:
            for payloads in self._store.payloads(topic, batch_size=size):
                columns = [
                    pa.array([_value(p.get(f.name), f.type) for p in payloads], type=f.type)
                    for f in schema
                ]
                yield pa.RecordBatch.from_arrays(columns, schema=schema)
        except (pa.ArrowException, ValueError) as exc:
            raise TerminalError(f"topic {topic!r}: {exc}") from exc


def _type_name(type_: pa.DataType) -> str:
    if pa.types.is_boolean(type_):
        return "boolean"
    if pa.types.is_int64(type_):
        return "bigint"
    if pa.types.is_floating(type_):
        return "double"
    return "text"
