"""PostgreSQL source (and Redshift, which speaks the same protocol).

Rows leave the database as Arrow batches through ADBC (binary ``COPY``, decoded in
C++), so memory is bounded by the batch, not the model. Redshift, which has no
``COPY TO STDOUT``, reads through a server-side cursor instead (``redshift.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from reflow.connectors._postgres import PostgresConfig, adbc_connect, connect, quote_qualified
from reflow.connectors._streaming import prefetched, rebatch
from reflow.connectors.base import (
    Column,
    SourceCapabilities,
    SourceConnector,
    TableRef,
    TestStep,
    run_steps,
)
from reflow.connectors.errors import InvalidQuery, ObjectNotFound

if TYPE_CHECKING:
    from reflow.connectors._postgres_bookkeeping import PostgresBookkeeping

BOOKKEEPING_SCHEMA = "reflow_bookkeeping"

# pg_type OIDs -> Arrow types; anything else travels as text.
_ARROW_BY_OID: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    26: pa.int64(),
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}

#: Size of the Arrow batches ADBC decodes a result into (re-cut to the batch size).
READ_CHUNK_BYTES = 2 << 20

_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", BOOKKEEPING_SCHEMA)


class PostgresSource(SourceConnector):
    service_name = "postgres"
    label = "Postgres"
    documentation_slug = "postgres"
    config_model = PostgresConfig
    capabilities = SourceCapabilities(supports_bookkeeping=True)
    config: PostgresConfig

    def test_connection(self) -> list[TestStep]:
        state: dict[str, Any] = {}

        def connectivity() -> None:
            state["conn"] = connect(self.config, autocommit=True)

        def read_access() -> None:
            state["conn"].execute(
                "SELECT schema_name FROM information_schema.schemata LIMIT 1"
            ).fetchall()

        def bookkeeping() -> None:
            conn = state["conn"]
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING_SCHEMA}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING_SCHEMA}._reflow_probe (x int)"
            )
            conn.execute(f"DROP TABLE {BOOKKEEPING_SCHEMA}._reflow_probe")

        try:
            return run_steps(
                [
                    ("Verify connectivity", connectivity),
                    ("Verify read access", read_access),
                    ("Verify write access to the bookkeeping schema", bookkeeping),
                ],
                warn={"Verify write access to the bookkeeping schema"},
            )
        finally:
            if "conn" in state:
                state["conn"].close()

    def list_tables(self) -> list[TableRef]:
        with connect(self.config, read_only=True) as conn:
            rows = conn.execute(
                "SELECT table_catalog, table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema <> ALL(%s) ORDER BY table_schema, table_name",
                (list(_SYSTEM_SCHEMAS),),
            ).fetchall()
        return [TableRef(*row) for row in rows]

    def list_columns(self, table: TableRef) -> list[Column]:
        with connect(self.config, read_only=True) as conn:
            rows = conn.execute(
                """
                SELECT c.column_name, c.data_type,
                       EXISTS (
                         SELECT 1 FROM information_schema.table_constraints tc
                         JOIN information_schema.constraint_column_usage cu
                           ON cu.constraint_name = tc.constraint_name
                          AND cu.table_schema = tc.table_schema
                         WHERE tc.table_schema = c.table_schema AND tc.table_name = c.table_name
                           AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')
                           AND cu.column_name = c.column_name)
                FROM information_schema.columns c
                WHERE c.table_schema = %s AND c.table_name = %s
                ORDER BY c.ordinal_position
                """,
                (table.schema, table.name),
            ).fetchall()
        if not rows:
            raise ObjectNotFound(f"table {table.schema}.{table.name} not found")
        return [Column(name, dtype, bool(unique)) for name, dtype, unique in rows]

    def query_columns(self, sql: str) -> list[Column]:
        import psycopg

        with connect(self.config, read_only=True) as conn:
            try:
                cur = conn.execute(f"SELECT * FROM ({_strip(sql)}) AS _reflow_q LIMIT 0")
            except psycopg.Error as exc:
                raise InvalidQuery(str(exc).strip()) from exc
            finally:
                conn.rollback()
            names = [d.name for d in cur.description or []]
            types = _type_names(conn, [d.type_code for d in cur.description or []])
        return [Column(n, t) for n, t in zip(names, types, strict=True)]

    def table_query(self, table: TableRef) -> str:
        return f"SELECT * FROM {quote_qualified(table.schema, table.name)}"

    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        import psycopg

        batch_size = batch_size or self.capabilities.batch_size
        source = f"SELECT * FROM ({_strip(sql)}) AS _reflow_q"
        with connect(self.config, read_only=True) as conn:
            try:
                cur = conn.execute(f"{source} LIMIT 0")
            except psycopg.Error as exc:
                raise InvalidQuery(str(exc).strip()) from exc
            columns = [(d.name, d.type_code) for d in cur.description or []]
        select, schema = arrow_select(columns, source)
        conn = adbc_connect(self.config, read_only=True)
        try:
            yield from arrow_batches(conn, select, schema, batch_size=batch_size)
        finally:
            conn.close()

    def open_bookkeeping(self, sync_id: int, *, namespace: str = "") -> PostgresBookkeeping:
        """Reflow's bookkeeping for one sync in this database (in-warehouse diff);
        ``namespace`` tells apart installations sharing the warehouse."""
        from reflow.connectors._postgres_bookkeeping import PostgresBookkeeping

        return PostgresBookkeeping(self.config, sync_id, namespace=namespace)

    def drop_bookkeeping(self, sync_id: int, *, namespace: str = "") -> None:
        """Remove a deleted sync's bookkeeping tables from this database."""
        from reflow.connectors._postgres_bookkeeping import drop

        drop(self.config, sync_id, namespace=namespace)


def arrow_batches(
    conn: Any, select: str, schema: pa.Schema, *, batch_size: int
) -> Iterator[pa.RecordBatch]:
    """Stream ``select`` out of an ADBC connection (binary ``COPY``, decoded to Arrow
    in C++) as batches of ``batch_size`` rows with ``schema``, read one batch ahead of
    the consumer. ``select`` must give each column a type ADBC returns as the type in
    ``schema`` (see ``arrow_select``)."""
    return prefetched(_arrow_batches(conn, select, schema, batch_size=batch_size))


def _arrow_batches(
    conn: Any, select: str, schema: pa.Schema, *, batch_size: int
) -> Iterator[pa.RecordBatch]:
    import adbc_driver_manager as adbc

    try:
        with conn.cursor() as cur:
            # ADBC's own batches are ~16 MB by default; smaller ones are re-cut to the
            # run's batch size anyway and keep less in memory at once.
            cur.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(READ_CHUNK_BYTES)}
            )
            cur.execute(select)
            reader = cur.fetch_record_batch()
            batches = (
                pa.RecordBatch.from_arrays(
                    [c.cast(f.type) for c, f in zip(b.columns, schema, strict=True)],
                    schema=schema,
                )
                for b in reader
            )
            yield from rebatch(batches, batch_size)
    except adbc.Error as exc:
        raise InvalidQuery(str(exc).strip()) from exc


def arrow_select(columns: list[tuple[str, int]], source: str) -> tuple[str, pa.Schema]:
    """``SELECT`` the named columns (with their type OIDs) of ``source`` so that each
    arrives as the Arrow type the CSV path gives it: types without an exact Arrow
    counterpart here travel as text (their canonical text form)."""
    from reflow.connectors._postgres import quote_ident

    exprs, fields = [], []
    for name, oid in columns:
        arrow = _ARROW_BY_OID.get(oid)
        ref = quote_ident(name)
        if arrow is None:
            exprs.append(f"{ref}::text AS {ref}")
        elif oid == 26:  # oid: unsigned in ADBC
            exprs.append(f"{ref}::int8 AS {ref}")
        else:
            exprs.append(ref)
        fields.append(pa.field(name, arrow or pa.string()))
    return f"SELECT {', '.join(exprs)} FROM ({source}) AS _reflow_a", pa.schema(fields)


def _strip(sql: str) -> str:
    return sql.strip().rstrip(";")


def _type_names(conn: Any, oids: list[int]) -> list[str]:
    if not oids:
        return []
    rows = dict(
        conn.execute(
            "SELECT oid, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(%s)", (oids,)
        ).fetchall()
    )
    return [rows.get(oid, "unknown") for oid in oids]
