"""Record-level results of sync runs: list, count, export."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.orm import Session

from reflow.api.deps import (
    WorkspaceContext,
    get_runtime,
    get_session,
    resolve_workspace,
    workspace_context,
)
from reflow.api.envelope import listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.responses import Envelope, Json, ListEnvelope, RecordCount, RecordsExport
from reflow.db.repo import PageParams
from reflow.errors import NotFound
from reflow.runtime import Runtime
from reflow.services import records, runs

router = APIRouter(tags=["sync runs"])


def _filters(
    status: str | None = Query(None, description="succeeded, rejected, invalid, NULL or DUPLICATE"),
    primary_identifier: str | None = Query(None, description="The record's sync key value."),
    operation: str | None = Query(None, description="upsert, update, insert, append or delete"),
) -> records.RecordFilter:
    return records.RecordFilter.parse(status, primary_identifier, operation)


@router.get("/sync_runs/{run_id}/records", response_model=ListEnvelope[Json])
def list_records(
    run_id: Int64,
    request: Request,
    filters: records.RecordFilter = Depends(_filters),
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    run = runs.get(ctx.session, workspace_id=ctx.workspace_id, run_id=run_id)
    ctx.runtime.run_files.fetch(run.id)
    page = records.list_(ctx.session, home=ctx.runtime.settings.home, run=run, filters=filters,
                         params=params)
    return listing(request, page, page.items)


@router.get("/sync_runs/{run_id}/records_count", response_model=Envelope[list[RecordCount]])
def count_records(
    run_id: Int64,
    filters: records.RecordFilter = Depends(_filters),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    run = runs.get(ctx.session, workspace_id=ctx.workspace_id, run_id=run_id)
    ctx.runtime.run_files.fetch(run.id)
    total = records.count(ctx.session, home=ctx.runtime.settings.home, run=run, filters=filters)
    return ok([{"record_count": total}])


@router.get("/sync_runs/{run_id}/records_export", response_model=RecordsExport)
def export_records(
    run_id: Int64,
    request: Request,
    filters: records.RecordFilter = Depends(_filters),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """``{"status": "success", "urls": [...]}``: Parquet files this server serves, each
    URL signed and valid for ``REFLOW_EXPORT_TTL_SECONDS`` (like Census's presigned URLs)."""
    run = runs.get(ctx.session, workspace_id=ctx.workspace_id, run_id=run_id)
    ctx.runtime.run_files.fetch(run.id)
    settings = ctx.runtime.settings
    done = records.export(ctx.session, home=settings.home, run=run, filters=filters,
                          ttl_seconds=settings.export_ttl_seconds, run_files=ctx.runtime.run_files)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    key = _export_key(ctx.runtime)
    urls = []
    for name in done.names:
        signature = records.sign_export(key, workspace_id=ctx.workspace_id, run_id=run.id,
                                        token=done.token, name=name, expires=done.expires)
        query = urlencode({"expires": done.expires, "signature": signature})
        urls.append(f"{base}/api/v1/sync_runs/{run_id}/records_export/{done.token}/{name}?{query}")
    return JSONResponse({"status": "success", "urls": urls})


@router.get("/sync_runs/{run_id}/records_export/{token}/{name}", include_in_schema=False)
def download_export(
    run_id: Int64,
    token: str,
    name: str,
    request: Request,
    expires: int | None = Query(None),
    signature: str | None = Query(None),
    session: Session = Depends(get_session),
    runtime: Runtime = Depends(get_runtime),
) -> FileResponse:
    """Served to a valid, unexpired signature, or to the run's workspace token."""
    workspace_id = records.workspace_of(session, run_id=run_id)
    signed = workspace_id is not None and records.signature_ok(
        _export_key(runtime), signature, expires, workspace_id=workspace_id, run_id=run_id,
        token=token, name=name,
    )
    if not signed:
        if signature is not None or not request.headers.get("authorization"):
            raise NotFound("export file not found, or its URL has expired")
        ctx = resolve_workspace(request, session, runtime)
        if workspace_id != ctx.workspace_id:
            raise NotFound("export file not found")
    path = records.export_file(runtime.settings.home, run_id=run_id, token=token, name=name,
                               run_files=runtime.run_files)
    return FileResponse(path, media_type="application/vnd.apache.parquet", filename=name)


def _export_key(runtime: Runtime) -> bytes:
    """A key for export URLs only, derived from the secret key."""
    secret = runtime.settings.resolved_secret_key().encode()
    return hmac.new(secret, b"reflow records export urls", hashlib.sha256).digest()
