"""dbt projects of a source (§11): list/create under ``/sources/{id}/projects``,
fetch, refresh (202, bare ``refresh_key``) and refresh status under ``/projects``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from reflow.api.deps import WorkspaceContext, json_object, workspace_context
from reflow.api.envelope import bare, iso, listing, ok, page_params
from reflow.db.repo import PageParams
from reflow.db.tables_links import Project
from reflow.errors import BadRequest, NotFound, ReflowError
from reflow.services import projects, sources

router = APIRouter(tags=["projects"])


def render_project(ctx: WorkspaceContext, project: Project) -> dict[str, Any]:
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
            for pm, m in projects.models_of(ctx.session, project=project)
        ],
    }


def _details(project: Project) -> dict[str, Any]:
    return {
        "latest_upgrade_at": iso(project.latest_upgrade_at),
        "last_upgrade_attempt_at": iso(project.last_upgrade_attempt_at),
        "last_upgrade_attempt_error": project.last_upgrade_attempt_error,
        "last_upgrade_attempt_output": project.last_upgrade_attempt_output,
    }


class ProjectNotFound(ReflowError):
    status_code = 404
    envelope_status = 404  # Census's project pages document {"status": 404}


def _project(ctx: WorkspaceContext, project_id: int) -> Project:
    try:
        return projects.get(ctx.session, workspace_id=ctx.workspace_id, project_id=project_id)
    except NotFound as exc:
        raise ProjectNotFound(exc.message) from None


@router.get("/sources/{source_id}/projects")
def list_projects(
    source_id: int,
    request: Request,
    params: PageParams = Depends(page_params),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    page = projects.list_(ctx.session, source=source, params=params)
    return listing(request, page, [render_project(ctx, p) for p in page.items])


@router.post("/sources/{source_id}/projects", status_code=201)
def create_project(
    source_id: int,
    body: dict[str, Any] = Depends(json_object),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=source_id)
    project = projects.create(ctx.session, source=source, vault=ctx.vault, body=body)
    ctx.commit()
    return ok(render_project(ctx, project), "created", 201)


@router.get("/projects/{project_id}")
def get_project(
    project_id: int, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    return ok(render_project(ctx, _project(ctx, project_id)))


@router.post("/projects/{project_id}/refresh", status_code=202)
def refresh_project(
    project_id: int, ctx: WorkspaceContext = Depends(workspace_context)
) -> JSONResponse:
    project = _project(ctx, project_id)
    source = sources.get(ctx.session, workspace_id=ctx.workspace_id, source_id=project.source_id)
    job = projects.refresh(ctx.session, project=project, source=source, vault=ctx.vault)
    ctx.commit()
    return bare({"refresh_key": job.id}, 202)


@router.get("/projects/{project_id}/refresh_status")
def project_refresh_status(
    project_id: int,
    refresh_key: str | None = Query(None),
    ctx: WorkspaceContext = Depends(workspace_context),
) -> JSONResponse:
    project = _project(ctx, project_id)
    if refresh_key is None or not str(refresh_key).isdigit():
        raise BadRequest("refresh_key is required and must be an integer")
    try:
        job = projects.refresh_status(ctx.session, project=project, refresh_key=int(refresh_key))
    except NotFound as exc:
        raise ProjectNotFound(exc.message) from None
    code = 200 if job.status == "completed" else 424
    return bare({"status": job.status, "details": _details(project)}, code)
