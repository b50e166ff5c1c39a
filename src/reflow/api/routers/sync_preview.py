"""``POST /api/v1/syncs/preview``: a Reflow extension (docs/compatibility.md). The body is
a ``POST /syncs`` body; the answer is what the sync's first run would do, from
``services/sync_preview.py``, with nothing stored or written anywhere."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import ok
from reflow.api.schemas.common import Envelope, Int64, Open
from reflow.api.schemas.requests import SyncCreate
from reflow.services import sync_preview

router = APIRouter(tags=["syncs"])
Json = dict[str, Any]


class SyncPreviewRead(Open):
    operation: str
    sync_key: str
    limit: int
    rows_read: int
    source_rows: int
    truncated: bool
    creates: int
    updates: int
    creates_or_updates: int
    deletes: int
    invalid: int
    invalid_records: list[Json]
    sample_records: list[Json]
    skipped_columns: list[str]


@router.post("/syncs/preview", response_model=Envelope[SyncPreviewRead])
def preview_sync(
    body: dict[str, Any] = Depends(body_of(SyncCreate)),
    limit: Annotated[Int64, Query(description="Source rows read at most.")] = (
        sync_preview.PREVIEW_LIMIT),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """A dry run of a sync that is not saved: expected creates, updates, deletes and
    invalid records over at most ``limit`` source rows."""
    result = sync_preview.preview(ctx.session, workspace_id=ctx.workspace_id, vault=ctx.vault,
                                  body=body, limit=limit)
    return ok(jsonable_encoder(result.as_dict()))  # sample values may be decimals, dates
