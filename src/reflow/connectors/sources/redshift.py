"""Amazon Redshift source: the PostgreSQL wire protocol on port 5439.

Everything but reading rows and the in-warehouse diff is the Postgres source's. Redshift has no
``COPY ... TO STDOUT`` (only ``UNLOAD`` to S3), so rows stream through a server-side
cursor instead, ``fetchmany`` chunk by chunk, which keeps memory bounded by the batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from pydantic import Field

from reflow.connectors._postgres import PostgresConfig, connect
from reflow.connectors.base import SourceCapabilities
from reflow.connectors.errors import InvalidQuery
from reflow.connectors.sources.postgres import _ARROW_BY_OID, PostgresSource


class RedshiftConfig(PostgresConfig):
    port: int = Field(5439, title="Port", description="TCP port of the cluster.", ge=1, le=65535)


class RedshiftSource(PostgresSource):
    service_name = "redshift"
    label = "Redshift"
    documentation_slug = "redshift"
    config_model = RedshiftConfig
    config: RedshiftConfig
    # The in-warehouse diff's SQL is PostgreSQL's (MATERIALIZED CTEs, writable CTEs,
    # UNLOGGED tables, COPY TO STDOUT), none of which Redshift has: diff engine-side.
    capabilities = SourceCapabilities(supports_bookkeeping=False)
    open_bookkeeping = None  # type: ignore[assignment]

    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        import psycopg

        batch_size = batch_size or self.capabilities.batch_size
        with connect(self.config, read_only=True) as conn:
            try:
                # A named cursor is a server-side DECLARE ... CURSOR in this transaction.
                with conn.cursor(name="reflow_read") as cur:
                    cur.execute(f"SELECT * FROM ({_strip(sql)}) AS _reflow_q")
                    schema = pa.schema(
                        [
                            (d.name, _ARROW_BY_OID.get(d.type_code, pa.string()))
                            for d in cur.description or []
                        ]
                    )
                    while rows := cur.fetchmany(batch_size):
                        yield _to_batch(rows, schema)
            except psycopg.Error as exc:
                raise InvalidQuery(str(exc).strip()) from exc


def _to_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for i, field in enumerate(schema):
        values = [row[i] for row in rows]
        if field.type == pa.string():
            values = [_as_text(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _as_text(value: Any) -> str | None:
    # Types without an Arrow mapping travel as text, as the Postgres source's CSV does.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _strip(sql: str) -> str:
    return sql.strip().rstrip(";")
