"""What applying a project would do to a workspace: creates, field-by-field changes,
adoptions (an existing object the project now names and manages) and, with
``prune``, deletions of managed objects the project no longer has.

Secrets are never compared (the API never returns them); credentials are compared key
by key for the non-secret keys the project spells out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reflow.project.loader import Item, Project, resolve_env
from reflow.project.remote import MANAGER, Remote, RemoteObject, canonical
from reflow.project.schema import FOLDERS

Diff = tuple[str, Any, Any]  # (field path, server value, project value)
CONNECTIONS = ("source", "destination")


@dataclass
class Change:
    kind: str
    slug: str
    action: str  # create | update | adopt | delete | unmanaged
    item: Item | None = None
    remote: RemoteObject | None = None
    diffs: list[Diff] = field(default_factory=list)
    desired: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.slug}"


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unmanaged"]

    def summary(self) -> str:
        count = {a: sum(c.action == a for c in self.changes)
                 for a in ("create", "update", "adopt", "delete")}
        return (f"Plan: {count['create']} to create, {count['update']} to change,"
                f" {count['adopt']} to adopt, {count['delete']} to delete"
                f" ({len(self.unchanged)} unchanged).")


SECRET = "(secret)"


def build(project: Project, remote: Remote, *, prune: bool = False, strict_env: bool = False,
          env: dict[str, str] | None = None, rotate_secrets: bool = False) -> Plan:
    """``rotate_secrets``: send the secret credential fields of existing connections too
    (the API never returns them, so no plan can tell whether they changed)."""
    plan = Plan()
    for kind in FOLDERS:
        for slug, item in project.items[kind].items():
            desired = _desired(item, remote, plan, strict_env=strict_env, env=env)
            if desired is None:
                continue
            secrets = _secrets_given(item, remote) if rotate_secrets else []
            _compare(plan, item, desired, remote.objects[kind].get(slug), remote, secrets)
    for kind in reversed(list(FOLDERS)):
        for slug, obj in remote.objects[kind].items():
            if slug in project.items[kind]:
                continue
            action = "delete" if prune and obj.managed_by == MANAGER else "unmanaged"
            plan.changes.append(Change(kind, slug, action, remote=obj))
    return plan


def _desired(item: Item, remote: Remote, plan: Plan, *, strict_env: bool,
             env: dict[str, str] | None) -> dict[str, Any] | None:
    data = canonical(item.kind, item.spec.model_dump(mode="json", by_alias=True))
    if item.kind == "sync":
        return _normalised_mode(item, data, plan)
    if item.kind not in CONNECTIONS:
        return data
    info = remote.types[item.kind].get(data["type"])
    if info is None:
        known = ", ".join(sorted(remote.types[item.kind])) or "none"
        plan.problems.append(f"{item.where(('type',))}: type: {item.label} has type"
                             f" {data['type']!r}, which the server does not offer ({known})")
        return None
    lenient = frozenset() if strict_env else frozenset(info.secrets)
    data["credentials"], problems = resolve_env(item, data["credentials"], env=env,
                                                lenient=lenient)
    plan.problems += problems
    return data


def _normalised_mode(item: Item, data: dict[str, Any], plan: Plan) -> dict[str, Any] | None:
    """The schedule as the server will echo it (the same pure parser the API uses), so
    an equivalent spelling never plans as a change; a bad one is caught before apply."""
    from reflow.services.schedules import parse_schedule_input, render_schedule_fields

    try:
        data["mode"] = render_schedule_fields(parse_schedule_input({"mode": data["mode"]}))["mode"]
    except ValueError as exc:
        plan.problems.append(f"{item.where(('mode',))}: mode: {exc}")
        return None
    return data


def _secrets_given(item: Item, remote: Remote) -> list[str]:
    if item.kind not in CONNECTIONS:
        return []
    info = remote.types[item.kind].get(item.spec.type)
    return sorted(k for k in item.spec.credentials if info and k in info.secrets)


def _compare(plan: Plan, item: Item, desired: dict[str, Any], obj: RemoteObject | None,
             remote: Remote, secrets: list[str]) -> None:
    if obj is None:
        plan.changes.append(Change(item.kind, item.slug, "create", item, None, [], desired))
        return
    if obj.spec is None:
        plan.problems.append(f"{item.where()}: {item.label} matches {item.kind} {obj.id} on the"
                             f" server, which a project cannot express: {obj.note}")
        return
    diffs = diff(_comparable(item.kind, obj.spec, remote), _comparable(item.kind, desired, remote,
                                                                       desired=True))
    _check_immutable(plan, item, diffs)
    diffs += [(f"credentials.{key}", SECRET, f"{SECRET} from the project") for key in secrets]
    if diffs:
        plan.changes.append(Change(item.kind, item.slug, "update", item, obj, diffs, desired))
    elif obj.managed_by != MANAGER:
        plan.changes.append(Change(item.kind, item.slug, "adopt", item, obj, [], desired))
    else:
        plan.unchanged.append(f"{item.kind} {item.slug}")


def _comparable(kind: str, spec: dict[str, Any], remote: Remote, *,
                desired: bool = False) -> dict[str, Any]:
    """Connections compare only the non-secret credential keys the project gives."""
    if kind not in CONNECTIONS:
        return spec
    out = dict(spec)
    secrets = remote.types[kind].get(spec["type"], None)
    hidden = secrets.secrets if secrets else set()
    out["credentials"] = {k: v for k, v in spec["credentials"].items() if k not in hidden}
    return out


def _check_immutable(plan: Plan, item: Item, diffs: list[Diff]) -> None:
    fixed = {"source": ("type",), "destination": ("type",), "model": ("source_id",),
             "segment": ("source_id", "model_id")}.get(item.kind, ())
    for path, old, new in diffs:
        if path == "dbt_manifest" and old is not None:  # the API has no project PATCH/DELETE
            plan.problems.append(f"{item.where((path,))}: dbt_manifest: {item.label} reads the"
                                 f" dbt project {old!r}; the API cannot change or remove it")
        if path in fixed:
            plan.problems.append(f"{item.where((path,))}: {path}: {item.label} cannot change"
                                 f" from {old!r} to {new!r} in place; give it a new slug to"
                                 " create a new one (and --prune the old one)")


def diff(old: Any, new: Any, path: str = "") -> list[Diff]:
    """Leaf-level differences; credentials of connections compare the project's keys."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Diff] = []
        keys = list(new) + [k for k in old if k not in new]
        for key in keys:
            sub = f"{path}.{key}" if path else str(key)
            if path == "credentials" and key not in new:
                continue  # a key the project leaves out keeps the server's value
            out += diff(old.get(key), new.get(key), sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            out += diff(a, b, f"{path}[{index}]")
        return out
    return [] if old == new else [(path, old, new)]


def as_json(plan: Plan) -> dict[str, Any]:
    """The plan for machines (a CI bot commenting on a pull request)."""
    return {
        "changes": [
            {
                "kind": c.kind, "slug": c.slug, "action": c.action,
                "id": c.remote.id if c.remote else None,
                "diffs": [{"field": f, "server": old, "project": new} for f, old, new in c.diffs],
            }
            for c in plan.changes
        ],
        "unchanged": plan.unchanged,
        "pending": len(plan.pending),
    }


def render(plan: Plan) -> str:
    symbols = {"create": "+", "update": "~", "adopt": "=", "delete": "-", "unmanaged": "?"}
    lines = []
    for change in plan.changes:
        lines.append(f"{symbols[change.action]} {change.label}: {_describe(change)}")
        for path, old, new in change.diffs:
            lines.append(f"    {path}: {_show(old)} -> {_show(new)}")
    lines.append(plan.summary())
    return "\n".join(lines)


def _describe(change: Change) -> str:
    if change.action == "create":
        return "create"
    if change.action == "update":
        return f"change (id {change.remote.id if change.remote else '?'})"
    if change.action == "adopt":
        return f"adopt (id {change.remote.id if change.remote else '?'}): mark managed, no change"
    if change.action == "delete":
        return f"delete (id {change.remote.id if change.remote else '?'}): managed, not in project"
    managed = change.remote is not None and change.remote.managed_by == MANAGER
    hint = "managed, not in project; --prune deletes it" if managed else "not managed; left alone"
    return f"{hint} (id {change.remote.id if change.remote else '?'})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
