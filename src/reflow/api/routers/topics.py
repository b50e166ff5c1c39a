"""Topics of HTTP Request sources (``/sources/{id}/topics``) and the ingestion
endpoint messages are posted to (``POST /ingest/{source_id}/{topic}``, outside
``/api/v1``: it is Reflow's own, authenticated by the topic's secret, not an API key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from reflow.api.deps import (
    WorkspaceContext,
    bearer_token,
    body_of,
    get_session,
    runtime_of,
    workspace_context,
)
from reflow.api.edge import parse_json
from reflow.api.envelope import iso, listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import TopicCreate, TopicUpdate
from reflow.api.schemas.responses import Accepted, Envelope, ListEnvelope, TopicRead
from reflow.db.repo import PageParams
from reflow.db.tables_links import Topic
from reflow.errors import BadRequest
from reflow.runtime import Runtime
from reflow.services import sources, topics

router = APIRouter(tags=["topics"])
ingest_router = APIRouter(tags=["ingestion"])

def _base(request: Request, runtime: Runtime) -> str:
    return (runtime.settings.public_url or str(request.base_url)).rstrip("/")


def render_topic(topic: Topic, base: str, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": topic.id,
        "name": topic.name,
        "description": topic.description,
        "created_at": iso(topic.created_at),
        "updated_at": iso(topic.updated_at),
        "schema": topic.message_schema,
        "ingestion_url": f"{base}/ingest/{topic.source_id}/{topic.name}",
    }
    if secret is not None:
        data["ingestion_secret"] = secret
    return data


@router.get("/sources/{source_id}/topics", response_model=ListEnvelope[TopicRead])
def list_topics(
    source_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    page = topics.list_(ctx.session, source=source, params=params)
    base = _base(request, ctx.runtime)
    return listing(request, page, [render_topic(t, base) for t in page.items])


@router.post("/sources/{source_id}/topics", status_code=201, response_model=Envelope[TopicRead])
def create_topic(
    source_id: Int64,
    request: Request,
    body: dict[str, Any] = Depends(body_of(TopicCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    topic, secret = topics.create(ctx.session, source=source, body=body)
    ctx.commit()
    return ok(render_topic(topic, _base(request, ctx.runtime), secret), "created", 201)


@router.get("/sources/{source_id}/topics/{topic_id}", response_model=Envelope[TopicRead])
def get_topic(
    source_id: Int64,
    topic_id: Int64,
    request: Request,
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    topic = topics.get(ctx.session, source=source, topic_id=topic_id)
    return ok(render_topic(topic, _base(request, ctx.runtime)))


@router.patch("/sources/{source_id}/topics/{topic_id}", response_model=Envelope[TopicRead])
def update_topic(
    source_id: Int64,
    topic_id: Int64,
    request: Request,
    body: dict[str, Any] = Depends(body_of(TopicUpdate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    topic = topics.get(ctx.session, source=source, topic_id=topic_id)
    secret = topics.update(ctx.session, source=source, topic=topic, body=body)
    ctx.commit()
    return ok(render_topic(topic, _base(request, ctx.runtime), secret), "updated")


def _authorized(
    source_id: Int64, topic_name: str, request: Request, session: Session = Depends(get_session)
) -> None:
    """The topic's secret, checked before ``_json_body`` reads a byte (issue 17)."""
    topics.ingestion_topic(
        session, source_id=source_id, topic_name=topic_name, secret=bearer_token(request)
    )


async def _json_body(request: Request) -> Any:
    """The body parsed; its size is bounded by ``api/edge.py`` (``max_ingest_bytes``)."""
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("the body holds no message")
    return parse_json(raw, max_depth=runtime_of(request).settings.max_json_depth)


_INGEST_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"anyOf": [
            {"type": "object", "additionalProperties": True},
            {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        ]}}},
    },
    "security": [{"ingestionSecret": []}],
}


@ingest_router.post(
    "/ingest/{source_id}/{topic_name}", status_code=202, openapi_extra=_INGEST_DOC,
    response_model=Accepted,
)
def ingest(
    source_id: Int64,
    topic_name: str,
    request: Request,
    _: None = Depends(_authorized),
    body: Any = Depends(_json_body),
    session: Session = Depends(get_session),
) -> JSONResponse:
    """One message (a JSON object) or many (an array of objects); all or none stored."""
    count = topics.ingest(
        session,
        source_id=source_id,
        topic_name=topic_name,
        secret=bearer_token(request),
        body=body,
    )
    session.commit()
    return JSONResponse({"status": "accepted", "messages": count}, status_code=202)
