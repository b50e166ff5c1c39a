"""A workspace as the API shows it, in project terms: every object named by its slug
and rendered as the spec the project would hold for it.

Slugs come from the server's register of managed objects (``/managed_objects``);
an object never applied from a project gets one derived from its name (``Demo
warehouse`` -> ``demo-warehouse``, ``-2`` etc. on collisions, in id order), which is
what ``export`` writes and what ``plan`` matches against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from reflow.project.client import Client
from reflow.project.schema import KINDS, SPECS

MANAGER = "reflow-project"
SYNC_SETTINGS = (
    "alert_attributes", "advanced_configuration", "field_behavior", "field_normalization",
    "field_order", "high_water_mark_attribute", "historical_sync_operation", "mirror_strategy",
    "failed_run_notifications_enabled", "failed_record_notifications_enabled",
    "failed_record_notifications_threshold_percent",
)


@dataclass
class RemoteObject:
    kind: str
    id: int
    slug: str
    managed_by: str | None
    spec: dict[str, Any] | None  # None: a shape the project cannot express (see note)
    note: str | None = None
    parent_id: int | None = None  # a model's source id


@dataclass
class TypeInfo:
    secrets: set[str] = field(default_factory=set)
    required: set[str] = field(default_factory=set)


@dataclass
class DbtProject:
    id: int
    path: str
    models: dict[str, int]


def dbt_project(raw: dict[str, Any]) -> DbtProject:
    return DbtProject(raw["id"], raw["path"], {m["name"]: m["id"] for m in raw["models"]})


@dataclass
class Remote:
    objects: dict[str, dict[str, RemoteObject]] = field(
        default_factory=lambda: {k: {} for k in KINDS}
    )
    types: dict[str, dict[str, TypeInfo]] = field(
        default_factory=lambda: {"source": {}, "destination": {}}
    )
    #: Source id -> its dbt project (the first, if several): id and model name -> id.
    dbt: dict[int, DbtProject] = field(default_factory=dict)

    def id_of(self, kind: str, slug: str) -> int | None:
        obj = self.objects[kind].get(slug)
        return obj.id if obj else None

    def by_id(self, kind: str) -> dict[int, RemoteObject]:
        return {o.id: o for o in self.objects[kind].values()}


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:200] or "unnamed"


class _Namer:
    """Registered slugs first; derived ones avoid them and each other."""

    def __init__(self, registered: dict[int, dict[str, Any]]) -> None:
        self.registered = registered
        self.used = {r["slug"] for r in registered.values()}

    def name(self, object_id: int, text: str) -> tuple[str, str | None]:
        row = self.registered.get(object_id)
        if row is not None:
            return row["slug"], row["managed_by"]
        base, n = slugify(text), 1
        slug = base
        while slug in self.used:
            n += 1
            slug = f"{base}-{n}"
        self.used.add(slug)
        return slug, None


def fetch(client: Client) -> Remote:
    remote = Remote()
    register: dict[str, dict[int, dict[str, Any]]] = {k: {} for k in KINDS}
    for row in client.get("/managed_objects"):
        if row["kind"] in register:
            register[row["kind"]][row["id"]] = row
    namers = {kind: _Namer(register[kind]) for kind in KINDS}
    sources = client.list_all("/sources")
    for raw in sources:
        projects = client.list_all(f"/sources/{raw['id']}/projects")
        connection = _connection_spec(raw)
        if projects:  # models a dbt project made are the manifest's, not the project's
            remote.dbt[raw["id"]] = dbt_project(projects[0])
            connection["dbt_manifest"] = projects[0]["path"]
        _add(remote, namers, "source", raw["id"], raw["name"], connection)
    for raw in sources:
        source_slug = remote.by_id("source")[raw["id"]].slug
        project = remote.dbt.get(raw["id"])
        for model in client.list_all(f"/sources/{raw['id']}/models"):
            if project and model["id"] in project.models.values():
                continue
            model_spec = {
                "source_id": source_slug, "name": model["name"], "query": model["query"],
                "description": model.get("description"),
            }
            _add(remote, namers, "model", model["id"], model["name"], model_spec, raw["id"])
    for raw in sources:
        _fetch_segments(client, remote, namers, raw["id"])
    for raw in client.list_all("/destinations"):
        _add(remote, namers, "destination", raw["id"], raw["name"], _connection_spec(raw))
    for raw in client.list_all("/syncs"):
        spec, note = _sync_spec(remote, raw)
        obj = _add(remote, namers, "sync", raw["id"], raw.get("label") or f"sync-{raw['id']}",
                   spec)
        obj.note = note
    _fetch_types(client, remote)
    return remote


def _add(remote: Remote, namers: dict[str, _Namer], kind: str, object_id: int, text: str,
         spec: dict[str, Any] | None, parent_id: int | None = None) -> RemoteObject:
    slug, manager = namers[kind].name(object_id, text)
    obj = RemoteObject(kind, object_id, slug, manager, canonical(kind, spec) if spec else None,
                       parent_id=parent_id)
    remote.objects[kind][slug] = obj
    return obj


def _fetch_segments(client: Client, remote: Remote, namers: dict[str, _Namer],
                    source_id: int) -> None:
    source_slug = remote.by_id("source")[source_id].slug
    models = remote.by_id("model")
    for raw in client.list_all(f"/sources/{source_id}/filter_segments"):
        model = models.get(raw.get("model_id") or 0)
        spec = None if model is None else {
            "source_id": source_slug, "name": raw["name"], "model_id": model.slug,
            "molecules": raw["molecules"],
        }
        obj = _add(remote, namers, "segment", raw["id"], raw["name"], spec, source_id)
        if model is None:
            obj.note = "only segments over a model (not a table or a dbt model) are expressible"


def _connection_spec(raw: dict[str, Any]) -> dict[str, Any]:
    return {"type": raw["type"], "name": raw["name"],
            "credentials": dict(raw.get("connection_details") or {})}


def _sync_spec(remote: Remote, raw: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    src, dst = raw["source_attributes"], raw["destination_attributes"]
    source = remote.by_id("source").get(src["connection_id"])
    destination = remote.by_id("destination").get(dst["connection_id"])
    obj = src.get("object") or {}
    if source is None or destination is None:
        return None, "its source or destination is not visible"
    dbt = remote.dbt.get(source.id)
    dbt_names = {i: name for name, i in dbt.models.items()} if dbt else {}
    if obj.get("type") == "model" and obj.get("id") in dbt_names:
        ref: dict[str, Any] = {"type": "dbt_model", "id": dbt_names[obj["id"]]}
    elif obj.get("type") == "model":
        model = remote.by_id("model").get(int(obj.get("id") or 0))
        if model is None:
            return None, f"model {obj.get('id')} is not visible"
        ref = {"type": "model", "id": model.slug}
    elif obj.get("type") in ("segment", "filter_segment_source"):
        segment = remote.by_id("segment").get(int(obj.get("id") or 0))
        if segment is None:
            return None, f"segment {obj.get('id')} is not visible"
        ref = {"type": "segment", "id": segment.slug}
    elif obj.get("type") == "table":
        ref = {"type": "table", **{k: obj.get(k) for k in
                                   ("table_catalog", "table_schema", "table_name")}}
    else:
        return None, f"a {obj.get('type')} source object is not expressible in a project yet"
    spec = {
        "label": raw.get("label"),
        "operation": raw["operation"],
        "paused": raw.get("paused", False),
        "source_attributes": {"connection_id": source.slug, "object": ref},
        "destination_attributes": {"connection_id": destination.slug, "object": dst["object"],
                                   "lead_union_insert_to": dst.get("lead_union_insert_to")},
        "mappings": raw["mappings"],
        "mode": raw.get("mode"),
        **{k: raw.get(k) for k in SYNC_SETTINGS if k in raw},
    }
    return spec, None


def canonical(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The comparable form of a spec: every field present, defaults filled in."""
    cleaned = {k: v for k, v in data.items() if v is not None or kind != "sync"}
    dumped = SPECS[kind].model_validate(cleaned).model_dump(mode="json", by_alias=True)
    dumped.pop("query_file", None)
    if kind == "sync":
        ref = dumped["source_attributes"]["object"]
        for key in [k for k, v in ref.items() if v is None]:
            del ref[key]
    return dumped


def _fetch_types(client: Client, remote: Remote) -> None:
    for kind, path in (("source", "/source_types"), ("destination", "/connectors")):
        for raw in client.list_all(path):
            fields = (raw.get("configuration_fields") or {}).get("fields") or []
            info = TypeInfo()
            for f in fields:
                if f.get("is_password_type_field"):
                    info.secrets.add(f["id"])
                if "required" in (f.get("rules") or []):
                    info.required.add(f["id"])
            remote.types[kind][raw["service_name"]] = info
