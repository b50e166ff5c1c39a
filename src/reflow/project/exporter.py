"""Writing a workspace as a project folder: ``reflow.yml``, one YAML file per object
under sources/, models/ (with the query in a .sql file beside it), destinations/ and
syncs/. Fields at the API's defaults are left out; secret fields, which the API never
returns, are written as ``${REFLOW_<SLUG>_<FIELD>}`` for apply to read from the
environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflow.project.loader import PROJECT_FILE, dump_yaml, secret_placeholder
from reflow.project.remote import Remote, RemoteObject
from reflow.project.schema import FOLDERS, SPECS

HEADER = "# Reflow project: `reflow plan .` shows what `reflow apply .` would change.\n"


def export(remote: Remote, root: Path) -> tuple[list[Path], list[str]]:
    """The files written, and notes on objects that could not be exported."""
    root.mkdir(parents=True, exist_ok=True)
    written = [_write(root / PROJECT_FILE, HEADER + dump_yaml({"version": 1}))]
    notes = []
    for kind, folder in FOLDERS.items():
        for obj in sorted(remote.objects[kind].values(), key=lambda o: o.slug):
            if obj.spec is None:
                notes.append(f"{kind} {obj.slug} (id {obj.id}) is not exported: {obj.note}")
                continue
            written += _write_object(remote, root / folder, obj)
    _remove_stale(root, written)
    return written, notes


def _write_object(remote: Remote, folder: Path, obj: RemoteObject) -> list[Path]:
    assert obj.spec is not None
    data = _compact(obj.kind, obj.spec)
    out = []
    if obj.kind in ("source", "destination"):
        data["credentials"] = _credentials(remote, obj)
    if obj.kind == "model":
        sql = folder / f"{obj.slug}.sql"
        out.append(_write(sql, obj.spec["query"] + "\n"))  # byte for byte, plus one newline
        data.pop("query", None)
        data = {**{k: v for k, v in data.items() if k != "description"},
                "query_file": sql.name, **_description(obj.spec)}
    out.append(_write(folder / f"{obj.slug}.yml", dump_yaml(data)))
    return out


def _description(spec: dict[str, Any]) -> dict[str, Any]:
    return {"description": spec["description"]} if spec.get("description") else {}


def _compact(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    model = SPECS[kind].model_validate(spec)
    data = model.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    if kind == "sync":  # mappings read best with only their non-default keys
        data["mappings"] = [
            m.model_dump(mode="json", by_alias=True, exclude_defaults=True)
            for m in model.mappings  # type: ignore[attr-defined]
        ]
        data["source_attributes"]["object"] = {
            k: v for k, v in spec["source_attributes"]["object"].items() if v is not None
        }
    return data


def _credentials(remote: Remote, obj: RemoteObject) -> dict[str, Any]:
    assert obj.spec is not None
    creds = dict(obj.spec["credentials"])
    info = remote.types[obj.kind].get(obj.spec["type"])
    if info is None:
        return creds
    for name in sorted(info.secrets):
        creds[name] = secret_placeholder(obj.slug, name, optional=name not in info.required)
    return creds


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:  # no newline translation: queries round-trip
        file.write(text)
    return path


def _remove_stale(root: Path, written: list[Path]) -> None:
    """Files of objects the workspace no longer has: the folder mirrors the server."""
    keep = {p.resolve() for p in written}
    for folder in FOLDERS.values():
        for path in (root / folder).glob("*"):
            if path.suffix in (".yml", ".yaml", ".sql") and path.resolve() not in keep:
                path.unlink()
