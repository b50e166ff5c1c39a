"""Record-level results of sync runs: list, count, export."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from reflow.api.deps import WorkspaceContext, get_runtime, workspace_context
from reflow.api.envelope import listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.responses import Envelope, Json, ListEnvelope, RecordCount, RecordsExport
from reflow.db.repo import PageParams
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
    total = records.count(ctx.session, home=ctx.runtime.settings.home, run=run, filters=filters)
    return ok([{"record_count": total}])


@router.get("/sync_runs/{run_id}/records_export", response_model=RecordsExport)
def export_records(
    run_id: Int64,
    request: Request,
    filters: records.RecordFilter = Depends(_filters),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """``{"status": "success", "urls": [...]}``: Parquet files this server serves."""
    run = runs.get(ctx.session, workspace_id=ctx.workspace_id, run_id=run_id)
    token, names = records.export(ctx.session, home=ctx.runtime.settings.home, run=run,
                                  filters=filters)
    base = (ctx.runtime.settings.public_url or str(request.base_url)).rstrip("/")
    urls = [f"{base}/api/v1/sync_runs/{run_id}/records_export/{token}/{n}" for n in names]
    return JSONResponse({"status": "success", "urls": urls})


@router.get("/sync_runs/{run_id}/records_export/{token}/{name}", include_in_schema=False)
def download_export(
    run_id: Int64, token: str, name: str, runtime: Runtime = Depends(get_runtime)
) -> FileResponse:
    path = records.export_file(runtime.settings.home, run_id=run_id, token=token, name=name)
    return FileResponse(path, media_type="application/vnd.apache.parquet", filename=name)
