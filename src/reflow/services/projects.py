"""dbt projects attached to a source (Census "projects", §11).

A project's ``path`` is a dbt project directory on the Reflow host (its
``target/manifest.json``, written by ``dbt compile``/``dbt run``, lists the models), a
``manifest.json`` file, or an http(s) URL of one (a dbt artifacts store), fetched on
every refresh. A refresh reconciles them
with Census models of the source: each materialised dbt model becomes (or updates) a
model whose query is ``SELECT * FROM <relation>`` quoted by the source connector's
``table_query``, with dbt's compiled SQL kept as ``compiled_query``. Existing
model-based syncs therefore read dbt models unchanged. Ephemeral models have no
relation and are skipped. A refresh runs inline (reading one local file is quick), so
its status is final as soon as ``POST /projects/{id}/refresh`` answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.connectors.base import SourceConnector, TableRef
from reflow.connectors.errors import ConnectorError
from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, get_scoped, paginate
from reflow.db.tables import Source, SourceModel, Sync, utcnow
from reflow.db.tables_links import Project, ProjectModel, ProjectRefresh
from reflow.errors import BadRequest, NotFound, ReflowError
from reflow.services import sources

MANIFEST = Path("target") / "manifest.json"


class RefreshFailed(ReflowError):
    status_code = 424


@dataclass(frozen=True)
class DbtModel:
    unique_id: str
    name: str
    description: str | None
    relation: TableRef
    compiled_query: str | None
    #: Column name -> its description in the manifest (documented columns only).
    column_descriptions: dict[str, str] = field(default_factory=dict)


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def _manifest_file(path: str) -> Path:
    return Path(path) if path.endswith(".json") else Path(path) / MANIFEST


def _load(path: str) -> tuple[str, Any]:
    """(what was read, the parsed manifest); ValueError says why it cannot be."""
    if is_url(path):
        return path, _fetch(path)
    file = _manifest_file(path)
    try:
        return str(file), json.loads(file.read_text())
    except FileNotFoundError:
        raise ValueError(f"{file} not found; run `dbt compile` in the project first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file} cannot be read: {exc}") from None


def _fetch(url: str) -> Any:
    import httpx

    try:
        response = httpx.get(url, timeout=30, follow_redirects=True)
        response.raise_for_status()
        return response.json()
    except httpx.HTTPStatusError as exc:
        raise ValueError(f"{url} answered {exc.response.status_code}") from None
    except httpx.HTTPError as exc:
        raise ValueError(f"{url} cannot be fetched: {exc}") from None
    except ValueError:
        raise ValueError(f"{url} did not answer JSON; is it a dbt manifest.json?") from None


def read_manifest(path: str) -> list[DbtModel]:
    """Materialised models of the manifest ``path`` names; ValueError says why not."""
    file, manifest = _load(path)
    nodes = manifest.get("nodes") if isinstance(manifest, dict) else None
    if not isinstance(nodes, dict):
        raise ValueError(f"{file} has no 'nodes' object; is it a dbt manifest?")
    models = [_model(uid, node) for uid, node in sorted(nodes.items()) if _selectable(node)]
    return [m for m in models if m is not None]


def _selectable(node: Any) -> bool:
    if not isinstance(node, dict) or node.get("resource_type") != "model":
        return False
    config = node.get("config")
    return not isinstance(config, dict) or config.get("materialized") != "ephemeral"


def _model(unique_id: str, node: dict[str, Any]) -> DbtModel | None:
    name, schema = node.get("name"), node.get("schema")
    if not isinstance(name, str) or not isinstance(schema, str):
        return None
    relation = TableRef(str(node.get("database") or ""), schema, str(node.get("alias") or name))
    compiled = node.get("compiled_code") or node.get("compiled_sql")
    return DbtModel(
        unique_id,
        name,
        node.get("description") or None,
        relation,
        compiled if isinstance(compiled, str) else None,
        _column_descriptions(node.get("columns")),
    )


def _column_descriptions(columns: Any) -> dict[str, str]:
    if not isinstance(columns, dict):
        return {}
    return {
        str(c.get("name") or key).lower(): c["description"]
        for key, c in columns.items()
        if isinstance(c, dict) and isinstance(c.get("description"), str) and c["description"]
    }


def _check_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("path is required: the dbt project directory on the Reflow host")
    if is_url(value):
        return value  # read (and checked) by the refresh that follows
    if value.endswith(".json"):
        if not Path(value).is_absolute() or not Path(value).is_file():
            raise BadRequest(f"path {value!r} is not an absolute path to a manifest.json file")
        return value
    if not Path(value).is_absolute():
        raise BadRequest("path must be an absolute path")
    if not Path(value).is_dir():
        raise BadRequest(f"path {value!r} is not a directory on the Reflow host")
    return value


def _default_name(path: str) -> str:
    """The project folder's name: ``.../shop`` and ``.../shop/target/manifest.json``."""
    parts = [p for p in path.rstrip("/").split("/") if p not in ("target", "manifest.json")]
    return parts[-1] if parts else path


def create(session: Session, *, source: Source, vault: Vault, body: dict[str, Any]) -> Project:
    """The project with its models; a manifest that cannot be read creates nothing."""
    if source.type == "http_request":
        raise BadRequest(
            f"source {source.id} is an HTTP Request source; dbt projects need a SQL source"
        )
    project_type = body.get("type", "dbt")
    if project_type != "dbt":
        raise BadRequest("type must be 'dbt' (Looker and Sigma projects are not supported)")
    path = _check_path(body.get("path"))
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise BadRequest("name must be a non-empty string")
    project = Project(
        workspace_id=source.workspace_id,
        source_id=source.id,
        name=name or _default_name(path),
        type="dbt",
        path=path,
    )
    session.add(project)
    session.flush()
    job = refresh(session, project=project, source=source, vault=vault)
    if job.status != "completed":
        raise BadRequest(f"path: {job.output}")
    return project


def get(session: Session, *, workspace_id: int, project_id: int) -> Project:
    return get_scoped(session, Project, project_id, workspace_id, "project")


def list_(session: Session, *, source: Source, params: PageParams) -> Page:
    return paginate(
        session, select(Project).where(Project.source_id == source.id), params, Project.id
    )


def models_of(session: Session, *, project: Project) -> list[tuple[ProjectModel, SourceModel]]:
    from reflow.services.listing import project_models

    return project_models(session, project_ids=[project.id])[project.id]


def refresh(session: Session, *, project: Project, source: Source, vault: Vault) -> ProjectRefresh:
    """Reconciles the project's models with its manifest; the returned job's id is the
    refresh key. A failure changes no model and is recorded on the project."""
    now = utcnow()
    project.last_upgrade_attempt_at = now
    try:
        found = read_manifest(project.path)  # nothing changes before this and the
        connector = _connector(source, vault)  # connector are known to be good
    except ValueError as exc:
        project.last_upgrade_attempt_error, project.last_upgrade_attempt_output = True, str(exc)
        job = ProjectRefresh(project_id=project.id, status="failed", output=str(exc))
    else:
        notes = _reconcile(session, project, source, connector, found)
        project.latest_upgrade_at = now
        project.last_upgrade_attempt_error = False
        project.last_upgrade_attempt_output = "; ".join(notes) or None
        job = ProjectRefresh(project_id=project.id, status="completed", output=None)
    session.add(job)
    session.flush()
    return job


def _connector(source: Source, vault: Vault) -> SourceConnector:
    try:
        return sources.connector(source, vault=vault)
    except Exception as exc:  # stored credentials that no longer validate
        raise ValueError(f"source {source.id} cannot be used: {exc}") from exc


def _reconcile(
    session: Session,
    project: Project,
    source: Source,
    connector: SourceConnector,
    found: list[DbtModel],
) -> list[str]:
    notes: list[str] = []
    known = {pm.unique_id: (pm, m) for pm, m in models_of(session, project=project)}
    try:
        for dbt in found:
            query = connector.table_query(dbt.relation)
            columns = _columns(connector, query, dbt, notes)
            if dbt.unique_id in known:
                pm, model = known.pop(dbt.unique_id)
                model.name, model.description, model.query = dbt.name, dbt.description, query
                model.columns, pm.compiled_query = columns, dbt.compiled_query
                continue
            model = SourceModel(
                workspace_id=source.workspace_id,
                source_id=source.id,
                name=dbt.name,
                description=dbt.description,
                query=query,
                columns=columns,
            )
            session.add(model)
            session.flush()
            session.add(
                ProjectModel(
                    project_id=project.id,
                    model_id=model.id,
                    unique_id=dbt.unique_id,
                    compiled_query=dbt.compiled_query,
                )
            )
    finally:
        connector.close()
    for unique_id, (pm, model) in known.items():
        _remove(session, pm, model, unique_id, notes)
    session.flush()
    return notes


def _columns(
    connector: SourceConnector, query: str, dbt: DbtModel, notes: list[str]
) -> list[dict[str, Any]]:
    """A model dbt has not built yet has no relation: it is listed without columns."""
    try:
        columns = [{"name": c.name, "type": c.type} for c in connector.query_columns(query)]
    except ConnectorError as exc:
        notes.append(f"{dbt.unique_id}: {exc}")
        return []
    for column in columns:  # dbt documents columns; Census shows the descriptions
        described = dbt.column_descriptions.get(column["name"].lower())
        if described:
            column["description"] = described
    return columns


def _remove(
    session: Session, pm: ProjectModel, model: SourceModel, unique_id: str, notes: list[str]
) -> None:
    users = [
        s.id
        for s in session.scalars(select(Sync).where(Sync.source_id == model.source_id))
        if s.source_object.get("type") == "model" and s.source_object.get("id") == model.id
    ]
    if users:
        notes.append(f"{unique_id} left the manifest but is kept: used by syncs {users}")
        return
    session.delete(pm)
    session.flush()  # before the model: its foreign key would cascade to pm first
    session.delete(model)


def refresh_status(session: Session, *, project: Project, refresh_key: int) -> ProjectRefresh:
    job = session.get(ProjectRefresh, refresh_key)
    if job is None or job.project_id != project.id:
        raise NotFound(f"refresh {refresh_key} of project {project.id} not found")
    return job
