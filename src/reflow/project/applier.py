"""Carrying out a plan through the API, in dependency order (sources, models,
segments, destinations, syncs; deletions the other way round).

Everything is checked before the first change: the project itself, the environment
variables it needs, and each model and sync whose references already exist through the
API's own ``validate_only``. Each object is then one API call (create or PATCH), which
the server applies in one transaction, so a failure part-way leaves every object either
as it was or fully applied; the report says which were applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from reflow.project.client import ApiError, Client
from reflow.project.planner import Change, Plan
from reflow.project.remote import MANAGER, DbtProject, Remote, dbt_project

FIELD = re.compile(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*):")
CONNECTION_KEY = {"source": "connection", "destination": "service_connection"}
PAST = {"create": "created", "update": "changed", "adopt": "adopted (marked managed)",
        "delete": "deleted"}
PATH = {"model": "models", "segment": "filter_segments"}  # under /sources/{id}/
COLLECTION = {"source": "/sources", "destination": "/destinations", "sync": "/syncs"}


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    failed: str | None = None
    skipped: list[str] = field(default_factory=list)


class Applier:
    def __init__(self, client: Client, remote: Remote) -> None:
        self.client = client
        self.ids: dict[str, dict[str, int]] = {
            kind: {slug: obj.id for slug, obj in objs.items()}
            for kind, objs in remote.objects.items()
        }
        slugs = {obj.id: slug for slug, obj in remote.objects["source"].items()}
        #: Source slug -> its dbt project.
        self.dbt: dict[str, DbtProject] = {slugs[i]: p for i, p in remote.dbt.items()}

    # -- validation -------------------------------------------------------------------

    def validate(self, plan: Plan) -> list[str]:
        """Server-side checks that change nothing: each model and sync to create or change
        whose references already exist goes through ``validate_only``."""
        problems = []
        for change in plan.pending:
            if change.action not in ("create", "update"):
                continue
            if change.kind == "model":
                problems += self._validate_model(change)
            elif change.kind == "sync":
                problems += self._validate_sync(change)
        return problems

    def _validate_sync(self, change: Change) -> list[str]:
        try:
            body = self._sync_body(change.desired or {})
            if body is None:
                return []  # it refers to objects this apply creates first
            self.client.post("/syncs", {**body, "validate_only": True})
        except ApiError as exc:
            where = change.item.where(_field_path(exc.message)) if change.item else ""
            return [f"{where}: {change.label}: the server refuses it: {exc.message}"]
        except ValueError as exc:
            where = change.item.where() if change.item else ""
            return [f"{where}: {change.label}: {exc}"]
        return []

    def _validate_model(self, change: Change) -> list[str]:
        """The query runs in its source (``validate_only``) when the source exists."""
        spec = change.desired or {}
        source_id = self.ids["source"].get(spec["source_id"])
        if source_id is None:
            return []  # created by this apply: its models are checked when created
        if change.action == "update" and all(p != "query" for p, _, _ in change.diffs):
            return []
        try:
            self.client.post(f"/sources/{source_id}/models",
                             {**_model_body(spec), "validate_only": True})
        except ApiError as exc:
            item = change.item
            path = ("query_file",) if item and ("query_file",) in item.lines else ("query",)
            where = item.where(path) if item else ""
            return [f"{where}: {change.label}: the server refuses it: {exc.message}"]
        return []

    def refresh_dbt(self, sources: list[str]) -> list[str]:
        """Re-read the manifests of these sources' dbt projects (POST /projects/{id}/refresh),
        so syncs on dbt models follow the manifest; the lines report each refresh."""
        lines = []
        for slug in sources:
            project = self.dbt.get(slug)
            if project is None:
                continue
            key = self.client.request("POST", f"/projects/{project.id}/refresh")["refresh_key"]
            try:
                self.client.request("GET", f"/projects/{project.id}/refresh_status",
                                    params={"refresh_key": key})
            except ApiError as exc:
                raise ValueError(f"source {slug}: the dbt manifest cannot be read:"
                                 f" {_refresh_output(self.client, project.id) or exc}") from None
            self.dbt[slug] = dbt_project(self.client.get(f"/projects/{project.id}"))
            lines.append(f"source {slug}: dbt project re-read ({len(self.dbt[slug].models)}"
                         " models)")
        return lines

    # -- applying ---------------------------------------------------------------------

    def apply(self, plan: Plan) -> Outcome:
        outcome = Outcome()
        pending = plan.pending
        for index, change in enumerate(pending):
            try:
                self._one(change)
            except (ApiError, ValueError) as exc:
                outcome.failed = f"{change.label}: {change.action} failed: {exc}"
                outcome.skipped = [c.label for c in pending[index + 1:]]
                return outcome
            outcome.applied.append(f"{change.label}: {PAST[change.action]}")
        return outcome

    def _one(self, change: Change) -> None:
        if change.action == "delete":
            self._delete(change)
            return
        if change.action == "create":
            object_id = self._create(change)
            self.ids[change.kind][change.slug] = object_id
        else:
            assert change.remote is not None
            object_id = change.remote.id
            if change.action == "update":
                self._update(change, object_id)
        try:
            self.client.put(f"/managed_objects/{change.kind}/{object_id}",
                            {"slug": change.slug, "managed_by": MANAGER})
        except ApiError as exc:  # the object itself is done; say exactly what is not
            raise ApiError("PUT", "/managed_objects", exc.status,
                           f"{change.kind} {object_id} was {PAST[change.action]} but not marked"
                           f" managed as {change.slug!r}: {exc.message}") from exc

    def _create(self, change: Change) -> int:
        spec = change.desired or {}
        if change.kind in CONNECTION_KEY:
            conn = {"type": spec["type"], "name": spec["name"], "credentials": spec["credentials"]}
            data = self.client.post(COLLECTION[change.kind], {CONNECTION_KEY[change.kind]: conn})
            if spec.get("dbt_manifest"):
                try:
                    self._attach_dbt(change.slug, int(data["id"]), spec["dbt_manifest"])
                except ApiError:  # a source without its manifest would be half made
                    self.client.delete(f"/sources/{data['id']}")
                    raise
            return int(data["id"])
        if change.kind == "model":
            source_id = self.ids["source"][spec["source_id"]]
            data = self.client.post(f"/sources/{source_id}/models", _model_body(spec))
            return int(data["id"])
        if change.kind == "segment":
            source_id = self.ids["source"][spec["source_id"]]
            segment = {"name": spec["name"], "model_id": self.ids["model"][spec["model_id"]],
                       "molecules": spec["molecules"]}
            return int(self.client.post(f"/sources/{source_id}/filter_segments", segment)["id"])
        body = self._sync_body(spec)
        assert body is not None, "dependencies are applied first"
        return int(self.client.post("/syncs", body)["sync_id"])

    def _update(self, change: Change, object_id: int) -> None:
        spec = change.desired or {}
        top = sorted({path.split(".")[0].split("[")[0] for path, _, _ in change.diffs})
        if change.kind in CONNECTION_KEY:
            if "dbt_manifest" in top:  # planned only from none to one
                self._attach_dbt(change.slug, object_id, spec["dbt_manifest"])
                top.remove("dbt_manifest")
            conn: dict[str, Any] = {k: spec[k] for k in top if k != "credentials"}
            changed = {p.split(".", 1)[1].split("[")[0] for p, _, _ in change.diffs
                       if p.startswith("credentials.")}
            if changed:
                conn["credentials"] = {k: spec["credentials"][k] for k in changed}
            if conn:
                path = f"{COLLECTION[change.kind]}/{object_id}"
                self.client.patch(path, {CONNECTION_KEY[change.kind]: conn})
        elif change.kind in ("model", "segment"):
            assert change.remote is not None and change.remote.parent_id is not None
            fields = ("name", "query", "description", "molecules")
            body = {k: spec.get(k) for k in top if k in fields}
            self.client.patch(f"/sources/{change.remote.parent_id}/{PATH[change.kind]}/{object_id}",
                              body)
        else:
            full = self._sync_body(spec)
            assert full is not None
            self.client.patch(f"/syncs/{object_id}", {k: full[k] for k in top if k in full})

    def _attach_dbt(self, slug: str, source_id: int, manifest: str) -> None:
        data = self.client.post(f"/sources/{source_id}/projects", {"type": "dbt", "path": manifest})
        self.dbt[slug] = dbt_project(data)

    def _delete(self, change: Change) -> None:
        assert change.remote is not None
        obj = change.remote
        if change.kind in PATH:
            self.client.delete(f"/sources/{obj.parent_id}/{PATH[change.kind]}/{obj.id}")
        else:
            self.client.delete(f"{COLLECTION[change.kind]}/{obj.id}")
        self.client.delete(f"/managed_objects/{change.kind}/{obj.id}")

    def _sync_body(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """The ``POST /syncs`` body: slugs replaced by ids; None while one is unknown."""
        src, dst = spec["source_attributes"], spec["destination_attributes"]
        source_id = self.ids["source"].get(src["connection_id"])
        destination_id = self.ids["destination"].get(dst["connection_id"])
        obj = dict(src["object"])
        if obj["type"] == "dbt_model":
            project = self.dbt.get(src["connection_id"])
            if project is None:
                return None
            if obj["id"] not in project.models:
                known = ", ".join(sorted(project.models)) or "none"
                raise ValueError(f"source_attributes.object.id: dbt model {obj['id']!r} is not in"
                                 f" the manifest of source {src['connection_id']!r} ({known})")
            obj = {"type": "model", "id": project.models[obj["id"]]}
        elif obj["type"] in ("model", "segment"):
            obj["id"] = self.ids[obj["type"]].get(obj["id"])
            if obj["id"] is None:
                return None
        if source_id is None or destination_id is None:
            return None
        body = {k: v for k, v in spec.items()
                if k not in ("source_attributes", "destination_attributes")}
        body["source_attributes"] = {"connection_id": source_id, "object": obj}
        body["destination_attributes"] = {**dst, "connection_id": destination_id}
        return body


def _refresh_output(client: Client, project_id: int) -> str | None:
    output = client.get(f"/projects/{project_id}").get("last_upgrade_attempt_output")
    return str(output) if output else None


def _field_path(message: str) -> tuple[str, ...]:
    """``mappings[3].to: ...`` -> ("mappings", "3", "to"): the API names the field first."""
    match = FIELD.match(message)
    return tuple(p for p in re.split(r"[.\[\]]+", match.group(1)) if p) if match else ()


def _model_body(spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": spec["name"], "query": spec["query"], "description": spec.get("description")}


def render(outcome: Outcome) -> str:
    lines = [f"  ok      {line}" for line in outcome.applied]
    if outcome.failed:
        lines.append(f"  FAILED  {outcome.failed}")
        lines += [f"  skipped {label}" for label in outcome.skipped]
        lines.append(f"Apply stopped: {len(outcome.applied)} applied, 1 failed (left as it was),"
                     f" {len(outcome.skipped)} not attempted.")
    else:
        lines.append(f"Apply complete: {len(outcome.applied)} applied.")
    return "\n".join(lines)
