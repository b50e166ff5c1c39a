"""Census operations Reflow does not implement, answered 404 with the envelope naming
them and what to do instead. Without these routes their paths fell into
``/destinations/{destination_id}`` and ``/syncs/{sync_id}`` and answered a puzzling
400 "must be an integer". 404, not 501: a 5xx reads as a server fault to clients
and monitors (and to schemathesis), and the resource simply is not here."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from reflow.api.deps import WorkspaceContext, workspace_context
from reflow.api.schemas.common import ErrorEnvelope
from reflow.errors import NotFound

router = APIRouter(tags=["not supported"])

_RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorEnvelope, "description": "Not supported by Reflow."}
}


@router.get("/destinations/authorize_url", responses=_RESPONSES, status_code=404)
def destination_authorize_url(_: WorkspaceContext = Depends(workspace_context)) -> None:
    """Census's legacy Census-managed OAuth flow."""
    raise NotFound(
        "GET /destinations/authorize_url is not supported: Reflow has no Census-managed "
        "OAuth; create the destination with its credentials (POST /destinations)"
    )


@router.get("/syncs/test_status", responses=_RESPONSES, status_code=404)
def sync_test_status(_: WorkspaceContext = Depends(workspace_context)) -> None:
    """Census's "test a sync" (send one sample record) status."""
    raise NotFound(
        "GET /syncs/test_status is not supported: Reflow has no test sync runs; "
        "trigger the sync (POST /syncs/{sync_id}/trigger) and read its run"
    )
