"""Record-level results of a sync run (``/sync_runs/{id}/records*``).

Invalid and rejected records live in ``sync_run_records`` (control-plane database);
succeeded records in the run's Parquet parts under ``REFLOW_HOME/runs/<id>/succeeded``
(see :mod:`reflow.engine.records`). A listing shows the database's records first, then
the succeeded ones, each in the order they were written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from reflow.db.repo import Page, PageParams
from reflow.db.tables import SyncRun, SyncRunRecord
from reflow.engine import records as files
from reflow.errors import BadRequest, Gone, NotFound, ReflowError
from reflow.storage import RunFiles
from reflow.timestamps import iso

STATUSES = ("succeeded", "rejected", "invalid", "NULL", "DUPLICATE")
OPERATIONS = ("upsert", "update", "insert", "append", "delete")
TERMINAL = ("completed", "failed", "skipped")
EXPORT_NAMES = ("records.parquet", "succeeded.parquet")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_EXPIRES = "expires"
#: Which stored statuses a ``status`` filter matches ("invalid" covers both key checks).
_DB_STATUSES = {
    None: ("rejected", "invalid", "NULL", "DUPLICATE"),
    "succeeded": (),
    "rejected": ("rejected",),
    "invalid": ("invalid", "NULL", "DUPLICATE"),
    "NULL": ("NULL",),
    "DUPLICATE": ("DUPLICATE",),
}


class TooEarly(ReflowError):
    status_code = 425


@dataclass(frozen=True)
class RecordFilter:
    status: str | None = None
    primary_identifier: str | None = None
    operation: str | None = None

    @classmethod
    def parse(cls, status: str | None, primary_identifier: str | None,
              operation: str | None) -> RecordFilter:
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of: {', '.join(STATUSES)}")
        if operation is not None and operation not in OPERATIONS:
            raise BadRequest(f"operation must be one of: {', '.join(OPERATIONS)}")
        return cls(status, primary_identifier, operation)

    @property
    def wants_files(self) -> bool:
        return self.status in (None, "succeeded")


def list_(session: Session, *, home: Path, run: SyncRun, filters: RecordFilter,
          params: PageParams) -> Page:
    db_total = _db_count(session, run, filters)
    offset, limit = (params.page - 1) * params.per_page, params.per_page
    items: list[dict[str, Any]] = []
    if offset < db_total:
        stmt = _db_query(select(SyncRunRecord), run, filters).order_by(SyncRunRecord.id)
        items += [_render_db(r) for r in session.scalars(stmt.offset(offset).limit(limit))]
    file_total = _file_count(home, run, filters)
    if len(items) < limit and file_total:
        items += _file_rows(home, run, filters, max(0, offset - db_total), limit - len(items))
    return Page(items, db_total + file_total, params)


def count(session: Session, *, home: Path, run: SyncRun, filters: RecordFilter) -> int:
    return _db_count(session, run, filters) + _file_count(home, run, filters)


# -- control-plane records ---------------------------------------------------------------


def _db_query(stmt: Select[Any], run: SyncRun, filters: RecordFilter) -> Select[Any]:
    stmt = stmt.where(SyncRunRecord.run_id == run.id,
                      SyncRunRecord.status.in_(_DB_STATUSES[filters.status]))
    if filters.primary_identifier is not None:
        stmt = stmt.where(SyncRunRecord.identifier == filters.primary_identifier)
    if filters.operation is not None:
        stmt = stmt.where(SyncRunRecord.operation == filters.operation)
    return stmt


def _db_count(session: Session, run: SyncRun, filters: RecordFilter) -> int:
    if not _DB_STATUSES[filters.status]:
        return 0
    stmt = _db_query(select(func.count(SyncRunRecord.id)), run, filters)
    return session.scalar(stmt) or 0


def _render_db(row: SyncRunRecord) -> dict[str, Any]:
    return {
        "identifier": row.identifier,
        "record_payload": row.record_payload,
        "operation": row.operation,
        "status": row.status,
        "status_message": row.status_message,
        "batch_started_at": iso(row.created_at),
        "batch_completed_at": iso(row.created_at),
    }


# -- succeeded records (Parquet) ---------------------------------------------------------


def _parts(home: Path, run: SyncRun) -> list[str]:
    directory = files.run_dir(home, run.id) / "succeeded"
    return sorted(str(p) for p in directory.glob("part-*.parquet"))


def _file_source(home: Path, run: SyncRun) -> str | None:
    parts = _parts(home, run)
    if not parts:
        return None
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in parts)
    options = "union_by_name = true, filename = true, file_row_number = true"
    return f"read_parquet([{listed}], {options})"


def _file_where(filters: RecordFilter) -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    if filters.primary_identifier is not None:
        clauses.append(f"{files.IDENTIFIER} = ?")
        params.append(filters.primary_identifier)
    if filters.operation is not None:
        clauses.append(f"{files.OPERATION} = ?")
        params.append(filters.operation)
    return " AND ".join(clauses), params


def _duckdb() -> Any:
    import duckdb

    return duckdb.connect()


def _file_count(home: Path, run: SyncRun, filters: RecordFilter) -> int:
    source = _file_source(home, run) if filters.wants_files else None
    if source is None:
        return 0
    where, params = _file_where(filters)
    with _duckdb() as con:
        return int(con.execute(f"SELECT count(*) FROM {source} WHERE {where}", params)
                   .fetchall()[0][0])


def _file_rows(home: Path, run: SyncRun, filters: RecordFilter, offset: int,
               limit: int) -> list[dict[str, Any]]:
    source = _file_source(home, run)
    where, params = _file_where(filters)
    sql = (f"SELECT * EXCLUDE (filename, file_row_number) FROM {source} WHERE {where}"
           " ORDER BY filename, file_row_number LIMIT ? OFFSET ?")
    with _duckdb() as con:
        # a relation: an executed DB-API result made an extra copy (and DuckDB warned)
        table = con.sql(sql, params=[*params, limit, offset]).to_arrow_table()
    return [_render_file(row) for row in table.to_pylist()]


def _render_file(row: dict[str, Any]) -> dict[str, Any]:
    payload = {k: v for k, v in row.items() if not k.startswith("__reflow_")}
    payload = json.loads(json.dumps(payload, default=str))
    return {
        "identifier": row[files.IDENTIFIER],
        "record_payload": payload,
        "operation": row[files.OPERATION],
        "status": "succeeded",
        "status_message": None,
        "batch_started_at": iso(row[files.STARTED]),
        "batch_completed_at": iso(row[files.COMPLETED]),
    }


# -- export ------------------------------------------------------------------------------

_EXPORT_SCHEMA = pa.schema([
    ("identifier", pa.string()),
    ("status", pa.string()),
    ("operation", pa.string()),
    ("status_message", pa.string()),
    ("record_payload", pa.string()),
    ("batch_started_at", pa.timestamp("us", tz="UTC")),
    ("batch_completed_at", pa.timestamp("us", tz="UTC")),
])


@dataclass(frozen=True)
class Export:
    token: str
    names: list[str]
    #: Unix time after which its URLs stop working and its files are deleted.
    expires: int


def export(
    session: Session, *, home: Path, run: SyncRun, filters: RecordFilter, ttl_seconds: int,
    now: float | None = None, run_files: RunFiles | None = None,
) -> Export:
    """Write the run's records as Parquet files (owner-only), valid ``ttl_seconds``, and
    hand each to ``run_files`` (shared with every API process when runs keep their files in
    object storage). Expired exports on this machine are pruned first (those in object
    storage by the retention job)."""
    if run.status not in TERMINAL:
        raise TooEarly("sync run has not finished processing")
    now = time.time() if now is None else now
    prune_exports(home, now=now)
    token = secrets.token_urlsafe(24)
    directory = files.run_dir(home, run.id) / "export" / token
    directory.mkdir(parents=True, mode=0o700)
    expires = int(now) + ttl_seconds
    (directory / _EXPIRES).write_text(str(expires))
    names = []
    if _export_db(session, run, filters, directory / EXPORT_NAMES[0]):
        names.append(EXPORT_NAMES[0])
    if _export_files(home, run, filters, directory / EXPORT_NAMES[1]):
        names.append(EXPORT_NAMES[1])
    for path in list(directory.iterdir()):
        path.chmod(0o600)
        if run_files is not None:
            run_files.saved(path)
    return Export(token, names, expires)


def _export_db(session: Session, run: SyncRun, filters: RecordFilter, path: Path) -> bool:
    if not _db_count(session, run, filters):
        return False
    stmt = _db_query(select(SyncRunRecord), run, filters).order_by(SyncRunRecord.id)
    with pq.ParquetWriter(path, _EXPORT_SCHEMA) as writer:
        for chunk in session.scalars(stmt.execution_options(yield_per=10_000)).partitions():
            writer.write_table(pa.Table.from_pylist([
                {"identifier": r.identifier, "status": r.status, "operation": r.operation,
                 "status_message": r.status_message,
                 "record_payload": json.dumps(r.record_payload, default=str),
                 "batch_started_at": r.created_at, "batch_completed_at": r.created_at}
                for r in chunk
            ], schema=_EXPORT_SCHEMA))
    return True


def _export_files(home: Path, run: SyncRun, filters: RecordFilter, path: Path) -> bool:
    if not _file_count(home, run, filters):
        return False
    source = _file_source(home, run)
    where, params = _file_where(filters)
    with _duckdb() as con:
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        payload = ", ".join(
            f'"{c}" := "{c}"' for c in columns
            if not c.startswith("__reflow_") and c not in ("filename", "file_row_number")
        )
        target = str(path).replace("'", "''")
        con.execute(
            f"COPY (SELECT {files.IDENTIFIER} AS identifier, 'succeeded' AS status,"
            f" {files.OPERATION} AS operation, NULL::VARCHAR AS status_message,"
            f" CAST(to_json(struct_pack({payload})) AS VARCHAR) AS record_payload,"
            f" {files.STARTED} AS batch_started_at, {files.COMPLETED} AS batch_completed_at"
            f" FROM {source} WHERE {where} ORDER BY filename, file_row_number)"
            f" TO '{target}' (FORMAT parquet)",
            params,
        ).fetchall()
    return True


def export_file(home: Path, *, run_id: int, token: str, name: str,
                now: float | None = None, run_files: RunFiles | None = None) -> Path:
    """A file of an earlier export, if it has not expired (an expired one is deleted),
    fetched from ``run_files`` when another process wrote it. The caller has checked the
    URL's signature or the workspace token first."""
    if not _TOKEN.match(token) or name not in EXPORT_NAMES:
        raise NotFound("export file not found")
    if run_files is not None:
        run_files.fetch(run_id, f"export/{token}")
    directory = files.run_dir(home, run_id) / "export" / token
    path = directory / name
    if not path.is_file():
        raise NotFound("export file not found")
    if _expired(directory, time.time() if now is None else now):
        if run_files is not None:
            run_files.delete_folder(run_id, f"export/{token}")
        shutil.rmtree(directory, ignore_errors=True)
        raise Gone("this export has expired; request a new one from records_export")
    return path


def prune_exports(home: Path, *, now: float | None = None) -> int:
    """Delete every expired export (and any without an expiry, from before expiries
    existed); returns how many."""
    now = time.time() if now is None else now
    pruned = 0
    for directory in (home / "runs").glob("*/export/*"):
        if directory.is_dir() and _expired(directory, now):
            shutil.rmtree(directory, ignore_errors=True)
            pruned += 1
    return pruned


def _expired(directory: Path, now: float) -> bool:
    try:
        return now > int((directory / _EXPIRES).read_text())
    except (OSError, ValueError):
        return True


def workspace_of(session: Session, *, run_id: int) -> int | None:
    """The workspace of run ``run_id`` (None when there is no such run)."""
    return session.scalar(select(SyncRun.workspace_id).where(SyncRun.id == run_id))


def sign_export(key: bytes, *, workspace_id: int, run_id: int, token: str, name: str,
                expires: int) -> str:
    """The download URL's signature: it binds the workspace, the run, the file and the
    expiry, so a URL cannot be stretched in time or pointed at another run."""
    message = f"records_export:{workspace_id}:{run_id}:{token}:{name}:{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signature_ok(key: bytes, signature: str | None, expires: int | None, *,
                 workspace_id: int, run_id: int, token: str, name: str,
                 now: float | None = None) -> bool:
    if not signature or expires is None:
        return False
    if (time.time() if now is None else now) > expires:
        return False
    expected = sign_export(key, workspace_id=workspace_id, run_id=run_id, token=token,
                           name=name, expires=expires)
    return hmac.compare_digest(expected, signature)
