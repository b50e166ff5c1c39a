"""Filter segments (Census §9): a molecule tree over a model (dataset) or a table,
compiled to SQL per dialect, readable by syncs, counted in the background."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.connectors.base import SourceConnector
from reflow.connectors.errors import ConnectorError
from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped, paginate
from reflow.db.tables import Source, SourceModel, Sync
from reflow.db.tables_sources import FilterSegment, RefreshJob, SourceTable
from reflow.errors import BadRequest, Conflict, NotFound
from reflow.runtime import Runtime
from reflow.services import models, refresh, source_catalog, sources
from reflow.services.segment_sql import Compiler, SegmentError, segment_query


@dataclass(frozen=True)
class Base:
    """What a segment filters: a model or a table."""

    model: SourceModel | None = None
    table: SourceTable | None = None

    def columns(self) -> list[str]:
        if self.model is not None:
            return [c["name"] for c in self.model.columns or []]
        return [c["name"] for c in (self.table.columns if self.table else None) or []]

    def sql(self, connector: SourceConnector) -> str:
        if self.model is not None:
            return self.model.query
        assert self.table is not None
        return connector.table_query(source_catalog.ref_of(self.table))


def base_of(session: Session, segment: FilterSegment) -> Base:
    if segment.model_id is not None:
        model = session.get(SourceModel, segment.model_id)
        if model is None:
            raise LookupError(f"model {segment.model_id} of segment {segment.id} no longer exists")
        return Base(model=model)
    table = session.get(SourceTable, segment.table_id)
    if table is None:
        raise LookupError(f"table {segment.table_id} of segment {segment.id} no longer exists")
    return Base(table=table)


def compile_query(
    session: Session,
    *,
    segment: FilterSegment,
    base: Base,
    connector: SourceConnector,
    molecules: Any = None,
) -> str:
    """The segment's SQL in the connector's dialect; SegmentError names a bad path."""

    def resolve(seg_id: int) -> list[Any]:
        other = session.get(FilterSegment, seg_id)
        if (
            other is None
            or other.source_id != segment.source_id
            or (other.model_id, other.table_id) != (segment.model_id, segment.table_id)
        ):
            raise SegmentError(
                f"segment {seg_id} is not a segment of the same dataset in this source"
            )
        return other.molecules

    compiler = Compiler(connector, base.columns(), resolve)
    if segment.id is not None:
        compiler._stack.append(segment.id)
    where = compiler.where(segment.molecules if molecules is None else molecules)
    return segment_query(base.sql(connector), where)


def _checked_query(
    session: Session, segment: FilterSegment, base: Base, vault: Vault, molecules: Any = None
) -> str:
    """Compile and let the source check the SQL (types, functions) without reading rows."""
    source = session.get(Source, segment.source_id)
    try:
        assert source is not None  # source_id is a non-null foreign key
        connector = sources.connector(source, vault=vault)
    except Exception as exc:
        raise BadRequest(f"source {segment.source_id} cannot be used: {exc}") from exc
    try:
        query = compile_query(
            session, segment=segment, base=base, connector=connector, molecules=molecules
        )
        connector.query_columns(query)
        return query
    except SegmentError as exc:
        raise BadRequest(str(exc)) from None
    except ConnectorError as exc:
        raise BadRequest(f"molecules: the source rejected the segment's SQL: {exc}") from exc
    finally:
        connector.close()


def _base_for_create(
    session: Session, *, source: Source, vault: Vault, dataset_id: Any, table_id: Any
) -> Base:
    if dataset_id is not None and table_id is not None:
        raise BadRequest("give either dataset_id or table_id, not both")
    if dataset_id is None and table_id is None:
        raise BadRequest("dataset_id is required and must be an integer")
    for field, value in (("dataset_id", dataset_id), ("table_id", table_id)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadRequest(f"{field} must be an integer")
    if dataset_id is not None:
        try:
            return Base(model=models.get(session, source=source, model_id=dataset_id))
        except NotFound:
            raise BadRequest(f"dataset_id: no dataset {dataset_id} in source {source.id}") from None
    try:
        table = source_catalog.get_table(session, source=source, table_id=table_id)
    except NotFound:
        raise BadRequest(f"table_id: no table {table_id} in source {source.id}") from None
    return Base(
        table=source_catalog.ensure_columns(session, source=source, vault=vault, table=table)
    )


def _check_name_and_molecules(body: dict[str, Any], *, partial: bool) -> None:
    if (not partial or "name" in body) and (
        not isinstance(body.get("name"), str) or not body["name"].strip()
    ):
        raise BadRequest("name is required and must be a non-empty string")
    if (not partial or "molecules" in body) and not isinstance(body.get("molecules"), list):
        raise BadRequest("molecules is required and must be an array")


def create(
    session: Session, *, runtime: Runtime, source: Source, body: dict[str, Any]
) -> FilterSegment:
    _check_name_and_molecules(body, partial=False)
    dataset_id = body.get("dataset_id", body.get("model_id"))
    base = _base_for_create(
        session,
        source=source,
        vault=runtime.vault,
        dataset_id=dataset_id,
        table_id=body.get("table_id"),
    )
    segment = FilterSegment(
        workspace_id=source.workspace_id,
        source_id=source.id,
        name=body["name"],
        molecules=body["molecules"],
        model_id=base.model.id if base.model else None,
        table_id=base.table.id if base.table else None,
    )
    segment.query = _checked_query(session, segment, base, runtime.vault)
    session.add(segment)
    session.flush()
    _start_count(session, runtime, source, segment)
    return segment


def update(
    session: Session,
    *,
    runtime: Runtime,
    source: Source,
    segment: FilterSegment,
    body: dict[str, Any],
) -> FilterSegment:
    _check_name_and_molecules(body, partial=True)
    for fixed in ("dataset_id", "model_id", "table_id"):
        if fixed in body and body[fixed] not in (segment.model_id, segment.table_id):
            raise BadRequest(f"{fixed} cannot be changed; create a new segment instead")
    if "molecules" in body:
        base = base_of(session, segment)
        query = _checked_query(session, segment, base, runtime.vault, body["molecules"])
        segment.molecules, segment.query = body["molecules"], query
        segment.record_count = None
        _start_count(session, runtime, source, segment)
    if "name" in body:
        segment.name = body["name"]
    session.flush()
    return segment


def _start_count(
    session: Session, runtime: Runtime, source: Source, segment: FilterSegment
) -> None:
    job = refresh.start(
        session, runtime=runtime, source=source, kind="segment_count", target_id=segment.id
    )
    segment.count_job_id = job.id


def get(session: Session, *, source: Source, segment_id: int) -> FilterSegment:
    segment = get_scoped(session, FilterSegment, segment_id, source.workspace_id, "segment")
    if segment.source_id != source.id:
        raise NotFound(f"segment {segment_id} not found")
    return segment


def list_(session: Session, *, source: Source, params: PageParams, name: str | None) -> Page:
    stmt = select(FilterSegment).where(FilterSegment.source_id == source.id)
    if name:
        stmt = stmt.where(
            FilterSegment.name.ilike(
                "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",
                escape="\\",
            )
        )
    return paginate(session, stmt, params, FilterSegment.id)


def delete(session: Session, *, segment: FilterSegment) -> None:
    users = [
        s.id
        for s in session.scalars(select(Sync).where(Sync.source_id == segment.source_id))
        if s.source_object.get("type") == "segment" and s.source_object.get("id") == segment.id
    ]
    if users:
        ids = ", ".join(str(i) for i in users)
        raise Conflict(f"segment {segment.id} is used by syncs {ids}; delete those syncs first")
    session.delete(segment)
    session.flush()


def ensure_model_unused(session: Session, *, model: SourceModel) -> None:
    """Deleting a model would delete its segments: refuse while there are any."""
    ids = session.scalars(select(FilterSegment.id).where(FilterSegment.model_id == model.id)).all()
    if ids:
        listed = ", ".join(str(i) for i in ids)
        raise Conflict(f"model {model.id} has segments {listed}; delete those segments first")


def count_status(session: Session, segment: FilterSegment) -> RefreshJob | None:
    return session.get(RefreshJob, segment.count_job_id) if segment.count_job_id else None


def query_for(session: Session, *, segment_id: int, connector: SourceConnector) -> str:
    """What a sync on the segment reads, compiled now (relative dates move with time)."""
    segment = session.get(FilterSegment, segment_id)
    if segment is None:
        raise LookupError(f"segment {segment_id} no longer exists")
    return compile_query(
        session, segment=segment, base=base_of(session, segment), connector=connector
    )


def count_job(runtime: Runtime, job: RefreshJob) -> None:
    connector = source_catalog._connector_for(runtime, job.source_id)
    try:
        with runtime.session() as session:
            query = query_for(session, segment_id=job.target_id or 0, connector=connector)
        batches = list(connector.read(f"SELECT COUNT(*) AS n FROM ({query}) AS _reflow_count"))
    finally:
        connector.close()
    count = int(next(v for b in batches for v in b.column(0).to_pylist()))

    def store(session: Session) -> None:
        segment = session.get(FilterSegment, job.target_id)
        if segment is not None and segment.count_job_id == job.id:
            segment.record_count = count

    refresh.finish(runtime, job.id, store=store)
