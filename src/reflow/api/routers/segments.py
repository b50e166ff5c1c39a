"""Filter segments under a source (§9)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reflow.api import render_sources
from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import SegmentCreate, SegmentUpdate
from reflow.api.schemas.responses import Deleted, Envelope, ListEnvelope, SegmentRead, SegmentStatus
from reflow.db.repo import PageParams
from reflow.services import segments, sources

router = APIRouter(tags=["segments"])


def _source(ctx: WorkspaceContext, source_id: Int64) -> Any:
    return sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)


@router.post(
    "/sources/{source_id}/filter_segments", status_code=201,
    response_model=Envelope[SegmentRead],
)
def create_segment(
    source_id: Int64,
    request: Request,
    body: dict[str, Any] = Depends(body_of(SegmentCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    segment = segments.create(
        ctx.session, runtime=ctx.runtime, source=_source(ctx, source_id), body=body
    )
    ctx.commit()
    url = str(request.url_for("segment_source_status", source_id=source_id, segment_id=segment.id))
    base = ctx.runtime.settings.public_url
    if base:
        url = (
            base.rstrip("/")
            + f"/api/v1/sources/{source_id}/filter_segments/{segment.id}/source_status"
        )
    return ok(render_sources.segment(segment), "created", 201, filter_segment_source_url=url)


@router.get("/sources/{source_id}/filter_segments", response_model=ListEnvelope[SegmentRead])
def list_segments(
    source_id: Int64,
    request: Request,
    name: str | None = Query(None, description="Case-insensitive partial name."),
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    page = segments.list_(ctx.session, source=_source(ctx, source_id), params=params, name=name)
    return listing(request, page, [render_sources.segment(s) for s in page.items])


@router.get(
    "/sources/{source_id}/filter_segments/{segment_id}",
    response_model=Envelope[SegmentRead],
)
def get_segment(
    source_id: Int64, segment_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    segment = segments.get(ctx.session, source=_source(ctx, source_id), segment_id=segment_id)
    return ok(render_sources.segment(segment))


@router.get(
    "/sources/{source_id}/filter_segments/{segment_id}/source_status", name="segment_source_status",
    response_model=Envelope[SegmentStatus],
)
def segment_source_status(
    source_id: Int64, segment_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    """``creation_status`` false while the member count is computed; then the segment.
    A failed count is reported in ``error`` with the source's message."""
    segment = segments.get(ctx.session, source=_source(ctx, source_id), segment_id=segment_id)
    job = segments.count_status(ctx.session, segment)
    if job is not None and job.status == "processing":
        return ok({"id": segment.id, "creation_status": False})
    error = job.message if job is not None and job.status == "failed" else None
    # Read again: the segment was loaded before the job, and without one read
    # transaction (SQLite) the count may have been stored in between.
    ctx.session.refresh(segment)
    return ok({**render_sources.segment(segment), "creation_status": True, "error": error})


@router.patch(
    "/sources/{source_id}/filter_segments/{segment_id}",
    response_model=Envelope[SegmentRead],
)
def update_segment(
    source_id: Int64,
    segment_id: Int64,
    body: dict[str, Any] = Depends(body_of(SegmentUpdate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = _source(ctx, source_id)
    segment = segments.get(ctx.session, source=source, segment_id=segment_id)
    segment = segments.update(
        ctx.session, runtime=ctx.runtime, source=source, segment=segment, body=body
    )
    ctx.commit()
    return ok(render_sources.segment(segment), "updated")


@router.delete("/sources/{source_id}/filter_segments/{segment_id}", response_model=Deleted)
def delete_segment(
    source_id: Int64, segment_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    segment = segments.get(ctx.session, source=_source(ctx, source_id), segment_id=segment_id)
    segments.delete(ctx.session, segment=segment)
    ctx.commit()
    return JSONResponse({"status": "deleted"})
