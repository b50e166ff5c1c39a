"""Workspace webhooks, their delivery log, and the alert instances of syncs and runs.

Reflow additions (not in the Census reference): ``GET /webhooks/{id}/deliveries``,
``GET /sync_runs/{id}/alerts`` and ``GET /syncs/{id}/alerts``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import iso, listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import WebhookCreate, WebhookUpdate
from reflow.api.schemas.responses import (
    AlertRead,
    Deleted,
    DeliveryRead,
    Envelope,
    ListEnvelope,
    WebhookRead,
)
from reflow.db.repo import PageParams
from reflow.db.tables_hooks import AlertInstance, Webhook, WebhookDelivery, WebhookEvent
from reflow.services import alerts, runs, syncs, webhooks
from reflow.services.listing import preload

router = APIRouter(tags=["webhooks"])


def render_webhook(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "name": hook.name,
        "description": hook.description,
        "events": hook.events,
        "endpoint": hook.endpoint,
        "created_at": iso(hook.created_at),
        "updated_at": iso(hook.updated_at),
    }


def render_delivery(delivery: WebhookDelivery, event: WebhookEvent | None) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event": event.event if event else None,
        "sync_id": event.sync_id if event else None,
        "sync_run_id": event.sync_run_id if event else None,
        "payload": json.loads(event.body) if event else None,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_status": delivery.response_status,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "last_attempt_at": iso(delivery.last_attempt_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "delivered_at": iso(delivery.delivered_at),
    }


def render_alert(row: AlertInstance) -> dict[str, Any]:
    return {
        "id": row.id,
        "sync_id": row.sync_id,
        "sync_run_id": row.sync_run_id,
        "alert_configuration_id": row.alert_id,
        "alert_type": row.alert_type,
        "status": row.status,
        "message": row.message,
        "details": row.details,
        "created_at": iso(row.created_at),
        "resolved_at": iso(row.resolved_at),
        "resolved_by_sync_run_id": row.resolved_by_run_id,
    }


@router.get("/webhooks", response_model=ListEnvelope[WebhookRead])
def list_webhooks(
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    page = webhooks.list_(ctx.session, workspace_id=ctx.workspace_id, params=params)
    return listing(request, page, [render_webhook(h) for h in page.items])


@router.post("/webhooks", response_model=Envelope[WebhookRead])
def create_webhook(
    body: dict[str, Any] = Depends(body_of(WebhookCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """201 ``created``; the only response that carries ``secret``."""
    hook, secret = webhooks.create(
        ctx.session,
        workspace_id=ctx.workspace_id,
        vault=ctx.vault,
        allow_http=ctx.runtime.settings.allow_http_webhooks,
        body=body,
    )
    ctx.commit()
    return ok({**render_webhook(hook), "secret": secret}, "created", 201)


@router.get("/webhooks/{webhook_id}", response_model=Envelope[WebhookRead])
def get_webhook(
    webhook_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    return ok(
        render_webhook(
            webhooks.get(ctx.session, workspace_id=ctx.workspace_id, webhook_id=webhook_id)
        )
    )


@router.patch("/webhooks/{webhook_id}", response_model=Envelope[WebhookRead])
def update_webhook(
    webhook_id: Int64,
    body: dict[str, Any] = Depends(body_of(WebhookUpdate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    hook = webhooks.get(ctx.session, workspace_id=ctx.workspace_id, webhook_id=webhook_id)
    hook = webhooks.update(
        ctx.session, hook=hook, body=body, allow_http=ctx.runtime.settings.allow_http_webhooks
    )
    ctx.commit()
    return ok(render_webhook(hook), "updated")


@router.delete("/webhooks/{webhook_id}", response_model=Deleted)
def delete_webhook(
    webhook_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    hook = webhooks.get(ctx.session, workspace_id=ctx.workspace_id, webhook_id=webhook_id)
    webhooks.delete(ctx.session, hook=hook)
    ctx.commit()
    return JSONResponse({"status": "deleted"})


@router.get("/webhooks/{webhook_id}/deliveries", response_model=ListEnvelope[DeliveryRead])
def list_deliveries(
    webhook_id: Int64,
    request: Request,
    status: str | None = Query(None, description="pending, delivered or failed"),
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    hook = webhooks.get(ctx.session, workspace_id=ctx.workspace_id, webhook_id=webhook_id)
    page = webhooks.list_deliveries(ctx.session, hook=hook, params=params, status=status)
    events = preload(ctx.session, WebhookEvent, [d.event_id for d in page.items])
    data = [render_delivery(d, ctx.session.get(WebhookEvent, d.event_id)) for d in page.items]
    del events  # held until every delivery was rendered
    return listing(request, page, data)


@router.get("/sync_runs/{run_id}/alerts", response_model=ListEnvelope[AlertRead])
def list_run_alerts(
    run_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    """Alert instances this run raised or resolved."""
    run = runs.get(ctx.session, workspace_id=ctx.workspace_id, run_id=run_id)
    page = alerts.list_instances(
        ctx.session, workspace_id=ctx.workspace_id, params=params, run_id=run.id
    )
    return listing(request, page, [render_alert(a) for a in page.items])


@router.get("/syncs/{sync_id}/alerts", response_model=ListEnvelope[AlertRead])
def list_sync_alerts(
    sync_id: Int64,
    request: Request,
    status: str | None = Query(None, description="raised (open) or resolved"),
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    sync = syncs.get(ctx.session, workspace_id=ctx.workspace_id, sync_id=sync_id)
    page = alerts.list_instances(
        ctx.session, workspace_id=ctx.workspace_id, params=params, sync_id=sync.id, status=status
    )
    return listing(request, page, [render_alert(a) for a in page.items])
