"""dbt projects of a source (§11): list/create under ``/sources/{id}/projects``,
fetch, refresh (202, bare ``refresh_key``) and refresh status under ``/projects``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reflow.api.deps import WorkspaceContext, body_of, workspace_context
from reflow.api.envelope import bare, iso, listing, ok, page_params
from reflow.api.schemas.common import Int64
from reflow.api.schemas.requests import ProjectCreate
from reflow.api.schemas.responses import (
    Envelope,
    ListEnvelope,
    ProjectRead,
    ProjectRefreshStatus,
    RefreshKey,
)
from reflow.db.repo import PageParams
from reflow.db.tables import SourceModel
from reflow.db.tables_links import Project, ProjectModel
from reflow.errors import BadRequest
from reflow.services import listing as listing_service
from reflow.services import projects, sources

router = APIRouter(tags=["projects"])


def render_project(
    ctx: WorkspaceContext, project: Project,
    models: list[tuple[ProjectModel, SourceModel]] | None = None,
) -> dict[str, Any]:
    """``models``: the project's (project model, model) pairs, when a page loaded them."""
    if models is None:
        models = projects.models_of(ctx.session, project=project)
    return {
        "id": project.id,
        "name": project.name,
        "type": project.type,
        "source_id": project.source_id,
        "path": project.path,
        "created_at": iso(project.created_at),
        "updated_at": iso(project.updated_at),
        **_details(project),
        "models": [
            {
                "id": m.id,
                "name": m.name,
                "unique_id": pm.unique_id,
                "query": m.query,
                "compiled_query": pm.compiled_query,
                "columns": m.columns,
            }
            for pm, m in models
        ],
    }


def _details(project: Project) -> dict[str, Any]:
    return {
        "latest_upgrade_at": iso(project.latest_upgrade_at),
        "last_upgrade_attempt_at": iso(project.last_upgrade_attempt_at),
        "last_upgrade_attempt_error": project.last_upgrade_attempt_error,
        "last_upgrade_attempt_output": project.last_upgrade_attempt_output,
    }


def _project(ctx: WorkspaceContext, project_id: Int64) -> Project:
    # Census's project pages show {"status": 404}; every Reflow 404 has one form
    # (docs/compatibility.md, "API edge").
    return projects.get(ctx.session, workspace_id=ctx.workspace_id, project_id=project_id)


@router.get("/sources/{source_id}/projects", response_model=ListEnvelope[ProjectRead])
def list_projects(
    source_id: Int64,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    page = projects.list_(ctx.session, source=source, params=params)
    models = listing_service.project_models(ctx.session, project_ids=[p.id for p in page.items])
    return listing(request, page, [render_project(ctx, p, models[p.id]) for p in page.items])


@router.post("/sources/{source_id}/projects", status_code=201, response_model=Envelope[ProjectRead])
def create_project(
    source_id: Int64,
    body: dict[str, Any] = Depends(body_of(ProjectCreate)),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    project = projects.create(ctx.session, source=source, vault=ctx.vault, body=body)
    ctx.commit()
    return ok(render_project(ctx, project), "created", 201)


@router.get("/projects/{project_id}", response_model=Envelope[ProjectRead])
def get_project(
    project_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    return ok(render_project(ctx, _project(ctx, project_id)))


@router.post("/projects/{project_id}/refresh", status_code=202, response_model=RefreshKey)
def refresh_project(
    project_id: Int64, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    project = _project(ctx, project_id)
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=project.source_id)
    job = projects.refresh(ctx.session, project=project, source=source, vault=ctx.vault)
    ctx.commit()
    return bare({"refresh_key": job.id}, 202)


@router.get(
    "/projects/{project_id}/refresh_status",
    response_model=ProjectRefreshStatus,
    responses={424: {"model": ProjectRefreshStatus,
    "description": "The refresh failed."}},
)
def project_refresh_status(
    project_id: Int64,
    refresh_key: str | None = Query(None),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    project = _project(ctx, project_id)
    if refresh_key is None or not str(refresh_key).isdigit():
        raise BadRequest("refresh_key is required and must be an integer")
    job = projects.refresh_status(ctx.session, project=project, refresh_key=int(refresh_key))
    code = 200 if job.status == "completed" else 424
    return bare({"status": job.status, "details": _details(project)}, code)
