"""The cached catalogue of a source: its tables and their columns (Census §6), and the
background jobs that refresh it and models' columns (§4.6, §7)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from reflow.connectors.base import Column, TableRef
from reflow.connectors.errors import ConnectorError, ObjectNotFound
from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped
from reflow.db.tables import Source, SourceModel
from reflow.db.tables_sources import FilterSegment, RefreshJob, SourceTable
from reflow.errors import BadRequest, NotFound
from reflow.runtime import Runtime
from reflow.services import refresh, sources

ORDER_FIELDS = ("table_name", "table_schema", "table_catalog")


@dataclass(frozen=True)
class TablePage:
    page: Page
    last_refreshed_at: dt.datetime | None


def parse_order_by(raw: str | None) -> list[tuple[str, str]]:
    """``table_schema:desc,table_name:asc`` -> [(field, direction)], or a 400."""
    if not raw:
        return [(f, "asc") for f in ("table_catalog", "table_schema", "table_name")]
    out = []
    for part in raw.split(","):
        name, _, direction = part.strip().partition(":")
        direction = (direction or "asc").strip().lower()
        if name not in ORDER_FIELDS:
            raise BadRequest(f"order_by: {name!r} is not one of: {', '.join(ORDER_FIELDS)}")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"order_by: direction {direction!r} of {name} must be asc or desc")
        out.append((name, direction))
    return out


def list_tables(
    session: Session,
    *,
    runtime: Runtime,
    source: Source,
    params: PageParams,
    search: str | None = None,
    order_by: str | None = None,
) -> TablePage:
    """The cached list; the first call for a source starts loading it."""
    ordering = parse_order_by(order_by)
    if refresh.latest(session, source_id=source.id, kind="tables") is None:
        refresh.start(session, runtime=runtime, source=source, kind="tables")
    stmt = select(SourceTable).where(SourceTable.source_id == source.id)
    if search:
        needle = search.lower()
        stmt = stmt.where(
            or_(
                *(
                    func.lower(getattr(SourceTable, f)).contains(needle, autoescape=True)
                    for f in ORDER_FIELDS
                )
            )
        )
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    order = [
        getattr(SourceTable, f).desc() if d == "desc" else getattr(SourceTable, f).asc()
        for f, d in ordering
    ]
    rows = session.scalars(
        stmt.order_by(*order, SourceTable.id)
        .offset((params.page - 1) * params.per_page)
        .limit(params.per_page)
    ).all()
    return TablePage(Page(list(rows), total, params), last_tables_refresh(session, source.id))


def last_tables_refresh(session: Session, source_id: int) -> dt.datetime | None:
    return session.scalar(
        select(func.max(RefreshJob.completed_at)).where(
            RefreshJob.source_id == source_id,
            RefreshJob.kind == "tables",
            RefreshJob.status == "completed",
        )
    )


def get_table(session: Session, *, source: Source, table_id: int) -> SourceTable:
    table = get_scoped(session, SourceTable, table_id, source.workspace_id, "table")
    if table.source_id != source.id:
        raise NotFound(f"table {table_id} not found")
    return table


def find_table(session: Session, *, source: Source, ref: TableRef) -> SourceTable | None:
    return session.scalar(
        select(SourceTable).where(
            SourceTable.source_id == source.id,
            SourceTable.table_catalog == ref.catalog,
            SourceTable.table_schema == ref.schema,
            SourceTable.table_name == ref.name,
        )
    )


def table_by_locator(
    session: Session, *, source: Source, vault: Vault, catalog: str, schema: str, name: str
) -> SourceTable:
    """The cached table, its columns loaded now if they never were."""
    ref = TableRef(catalog, schema, name)
    table = find_table(session, source=source, ref=ref)
    if table is None or table.columns is None:
        columns = _fetch_columns(source, vault, ref)
        table = table or _add_table(session, source, ref)
        _set_columns(table, columns)
        session.flush()
    return table


def ensure_columns(
    session: Session, *, source: Source, vault: Vault, table: SourceTable
) -> SourceTable:
    if table.columns is None:
        _set_columns(table, _fetch_columns(source, vault, ref_of(table)))
        session.flush()
    return table


def ref_of(table: SourceTable) -> TableRef:
    return TableRef(table.table_catalog, table.table_schema, table.table_name)


def _fetch_columns(source: Source, vault: Vault, ref: TableRef) -> list[Column]:
    try:
        connector = sources.connector(source, vault=vault)
    except Exception as exc:
        raise BadRequest(f"source {source.id} cannot be used: {exc}") from exc
    try:
        return connector.list_columns(ref)
    except ObjectNotFound:
        raise NotFound(
            f"table {ref.catalog}.{ref.schema}.{ref.name} not found in source {source.id}"
        ) from None
    except ConnectorError as exc:
        raise BadRequest(f"source {source.id}: {exc}") from exc
    finally:
        connector.close()


def _add_table(session: Session, source: Source, ref: TableRef) -> SourceTable:
    table = SourceTable(
        workspace_id=source.workspace_id,
        source_id=source.id,
        table_catalog=ref.catalog,
        table_schema=ref.schema,
        table_name=ref.name,
    )
    session.add(table)
    return table


def _set_columns(table: SourceTable, columns: list[Column]) -> None:
    table.columns = [
        {"name": c.name, "data_type": c.type, "can_be_upsert_key": c.unique} for c in columns
    ]
    table.columns_refreshed_at = dt.datetime.now(dt.UTC)


# --- background jobs ---------------------------------------------------------


def _connector_for(runtime: Runtime, source_id: int) -> Any:
    with runtime.session() as session:
        source = session.get(Source, source_id)
        if source is None:
            raise LookupError(f"source {source_id} no longer exists")
        return sources.connector(source, vault=runtime.vault)


def refresh_tables_job(runtime: Runtime, job: RefreshJob) -> None:
    connector = _connector_for(runtime, job.source_id)
    try:
        refs = connector.list_tables()
    finally:
        connector.close()

    def store(session: Session) -> None:
        source = session.get(Source, job.source_id)
        if source is not None:
            _store_tables(session, source, refs)

    refresh.finish(runtime, job.id, store=store)


def _store_tables(session: Session, source: Source, refs: list[TableRef]) -> None:
    """Keep ids of tables still there (legacy ids stay stable), add new ones, drop
    vanished ones unless a segment is built on them."""
    existing = {
        ref_of(t): t
        for t in session.scalars(select(SourceTable).where(SourceTable.source_id == source.id))
    }
    wanted = {TableRef(r.catalog or "", r.schema, r.name) for r in refs}
    for ref in wanted - existing.keys():
        _add_table(session, source, ref)
    gone = [t.id for ref, t in existing.items() if ref not in wanted]
    if gone:
        used = set(
            session.scalars(select(FilterSegment.table_id).where(FilterSegment.table_id.in_(gone)))
        )
        drop = [i for i in gone if i not in used]
        if drop:
            session.execute(sql_delete(SourceTable).where(SourceTable.id.in_(drop)))


def refresh_table_columns_job(runtime: Runtime, job: RefreshJob) -> None:
    with runtime.session() as session:
        table = session.get(SourceTable, job.target_id)
        if table is None:
            raise LookupError(f"table {job.target_id} no longer exists")
        ref = ref_of(table)
    connector = _connector_for(runtime, job.source_id)
    try:
        columns = connector.list_columns(ref)
    finally:
        connector.close()

    def store(session: Session) -> None:
        row = session.get(SourceTable, job.target_id)
        if row is not None:
            _set_columns(row, columns)

    refresh.finish(runtime, job.id, store=store)


def refresh_model_columns_job(runtime: Runtime, job: RefreshJob) -> None:
    with runtime.session() as session:
        model = session.get(SourceModel, job.target_id)
        if model is None:
            raise LookupError(f"model {job.target_id} no longer exists")
        query = model.query
    connector = _connector_for(runtime, job.source_id)
    try:
        columns = connector.query_columns(query)
    finally:
        connector.close()

    def store(session: Session) -> None:
        row = session.get(SourceModel, job.target_id)
        # The query may have changed meanwhile; its own refresh stores its columns.
        if row is not None and row.query == query:
            row.columns = [{"name": c.name, "type": c.type} for c in columns]

    refresh.finish(runtime, job.id, store=store)


# --- the polymorphic list of what a sync can read (§5) ---------------------------

_OBJECT_KINDS: tuple[tuple[str, Any], ...] = (
    ("table", SourceTable),
    ("model", SourceModel),
    ("segment", FilterSegment),
)


def list_objects(session: Session, *, runtime: Runtime, source: Source, params: PageParams) -> Page:
    """Tables, then models, then segments, each by id (``order`` reverses each kind);
    items are ``(type, row)``. Like ``/tables``, the first call loads the table list."""
    if refresh.latest(session, source_id=source.id, kind="tables") is None:
        refresh.start(session, runtime=runtime, source=source, kind="tables")
    offset, limit, total = (params.page - 1) * params.per_page, params.per_page, 0
    items: list[tuple[str, Any]] = []
    for kind, table in _OBJECT_KINDS:
        stmt = select(table).where(table.source_id == source.id)
        count = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        skip = max(0, offset - total)
        if len(items) < limit and skip < count:
            order = table.id.desc() if params.order == "desc" else table.id.asc()
            rows = session.scalars(stmt.order_by(order).offset(skip).limit(limit - len(items)))
            items.extend((kind, r) for r in rows)
        total += count
    return Page(items, total, params)
