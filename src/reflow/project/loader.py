"""Reading a project folder: YAML files -> validated specs, every error naming the file,
the line and the field, and every broken reference naming both ends."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reflow.project.schema import FOLDERS, KINDS, SLUG_PATTERN, SPECS, ModelSpec, ProjectFile, Spec

PROJECT_FILE = "reflow.yml"
#: ``${VAR}``, or ``${VAR:-default}`` which is used when VAR is unset.
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ProjectError(Exception):
    """The project cannot be used; ``problems`` lists every reason found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Item:
    kind: str
    slug: str
    spec: Any
    file: Path
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    prefix: tuple[str, ...] = ()

    def where(self, path: tuple[str, ...] = ()) -> str:
        """``file:line`` of the deepest part of ``path`` the file spells out."""
        full = self.prefix + path
        for n in range(len(full), -1, -1):
            if full[:n] in self.lines:
                return f"{self.file}:{self.lines[full[:n]]}"
        return str(self.file)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.slug!r}"


@dataclass
class Project:
    root: Path
    items: dict[str, dict[str, Item]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def all(self) -> list[Item]:
        return [i for kind in FOLDERS for i in self.items[kind].values()]


def load(root: Path) -> Project:
    """Parse and validate every file, then check references; raises ProjectError."""
    header = root / PROJECT_FILE
    if not header.is_file():
        raise ProjectError([f"{header}: not found; a project folder starts with {PROJECT_FILE}"])
    project, problems = Project(root), list[str]()
    _load_header(project, header, problems)
    for kind, folder in FOLDERS.items():
        for file in sorted((root / folder).glob("*.y*ml")):
            _load_object(project, kind, file, problems)
    if not problems:
        problems += check_references(project)
    if problems:
        raise ProjectError(problems)
    return project


def _read_yaml(file: Path, problems: list[str]) -> tuple[Any, dict[tuple[str, ...], int]] | None:
    try:
        text = file.read_text()
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{file}: cannot be read: {exc}")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(f"{file}{line}: not valid YAML: {reason}")
        return None
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def _index_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            out[child] = key.start_mark.line + 1
            _index_lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            _index_lines(value, (*path, str(index)), out)


def _load_header(project: Project, file: Path, problems: list[str]) -> None:
    read = _read_yaml(file, problems)
    if read is None:
        return
    data, lines = read
    probe = Item("project", "reflow.yml", None, file, lines)
    try:
        header = ProjectFile.model_validate(data or {})
    except ValidationError as exc:
        problems += _validation_problems(exc, probe)
        return
    for kind, folder in FOLDERS.items():
        for slug, spec in getattr(header, folder).items():
            _add(project, Item(kind, slug, spec, file, lines, (folder, slug)), problems)


def _load_object(project: Project, kind: str, file: Path, problems: list[str]) -> None:
    read = _read_yaml(file, problems)
    if read is None:
        return
    data, lines = read
    item = Item(kind, file.stem, None, file, lines)
    if not isinstance(data, dict):
        problems.append(f"{file}:1: a {kind} file must be a mapping of fields")
        return
    try:
        item.spec = SPECS[kind].model_validate(data)
    except ValidationError as exc:
        problems += _validation_problems(exc, item)
        return
    _add(project, item, problems)


def _add(project: Project, item: Item, problems: list[str]) -> None:
    if not re.match(SLUG_PATTERN, item.slug):
        problems.append(f"{item.where()}: {item.label}: a slug is lowercase letters, digits,"
                        " '-' and '_' (rename the file or the key)")
        return
    known = project.items[item.kind].get(item.slug)
    if known is not None:
        problems.append(f"{item.where()}: {item.label} is also defined at {known.where()}")
        return
    if isinstance(item.spec, ModelSpec) and item.spec.query_file is not None:
        sql = item.file.parent / item.spec.query_file
        if not sql.is_file():
            problems.append(f"{item.where(('query_file',))}: query_file: {sql} not found")
            return
        with sql.open(newline="") as file:  # \r\n stays as written
            text = file.read()
        text = text[:-1] if text.endswith("\n") else text  # export ends the file with one
        item.spec = item.spec.model_copy(update={"query": text, "query_file": None})
    project.items[item.kind][item.slug] = item


def _validation_problems(exc: ValidationError, item: Item) -> list[str]:
    out = []
    for err in exc.errors():
        path = tuple(str(p) for p in err["loc"])
        name = ".".join(path) or "(file)"
        out.append(f"{item.where(path)}: {name}: {err['msg']}")
    return out


def check_references(project: Project) -> list[str]:
    """Every slug a spec names must exist; a sync's model must belong to its source."""
    problems: list[str] = []
    for item in project.items["model"].values():
        _ref(project, item, ("source_id",), "source", item.spec.source_id, problems)
    for item in project.items["segment"].values():
        _ref(project, item, ("source_id",), "source", item.spec.source_id, problems)
        if _ref(project, item, ("model_id",), "model", item.spec.model_id, problems):
            _same_source(project, item, ("model_id",), "model", item.spec.model_id,
                         item.spec.source_id, problems)
    for item in project.items["sync"].values():
        src = item.spec.source_attributes
        _ref(project, item, ("source_attributes", "connection_id"), "source",
             src.connection_id, problems)
        dst = item.spec.destination_attributes
        _ref(project, item, ("destination_attributes", "connection_id"), "destination",
             dst.connection_id, problems)
        if src.object.type == "dbt_model":
            source = project.items["source"].get(src.connection_id)
            if source is not None and not source.spec.dbt_manifest:
                problems.append(
                    f"{item.where(('source_attributes', 'object'))}: {item.label} reads dbt model"
                    f" {src.object.id!r}, but source {src.connection_id!r} ({source.where()})"
                    " has no dbt_manifest"
                )
        if src.object.type in ("model", "segment"):
            where = ("source_attributes", "object", "id")
            if _ref(project, item, where, src.object.type, src.object.id or "", problems):
                _same_source(project, item, where, src.object.type, src.object.id or "",
                             src.connection_id, problems)
    return problems


def _same_source(project: Project, item: Item, where: tuple[str, ...], kind: str, slug: str,
                 source: str, problems: list[str]) -> None:
    target = project.items[kind][slug]
    if target.spec.source_id != source:
        problems.append(
            f"{item.where(where)}: {item.label} uses {kind} {slug!r} of source"
            f" {target.spec.source_id!r} ({target.where()}), but its own source is {source!r}"
        )


def _ref(project: Project, item: Item, path: tuple[str, ...], kind: str, slug: str,
         problems: list[str]) -> bool:
    if slug in project.items[kind]:
        return True
    known = ", ".join(sorted(project.items[kind])) or "none"
    problems.append(f"{item.where(path)}: {'.'.join(path)}: {item.label} refers to {kind}"
                    f" {slug!r}, which the project does not define ({FOLDERS[kind]}: {known})")
    return False


def resolve_env(
    item: Item, values: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
    lenient: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[str]]:
    """``values`` with each ``${VAR}`` replaced from the environment. An unset variable
    without a default is a problem naming it and the object, unless its key is in
    ``lenient`` (then the key is dropped: plan never compares secrets). A value that is
    only ``${VAR:-}`` with VAR unset is left out: an optional secret not given."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in values.items():
        if not isinstance(value, str):
            out[key] = value
            continue
        missing = [m.group(1) for m in ENV_REF.finditer(value)
                   if m.group(1) not in env and m.group(2) is None]
        if missing and key in lenient:
            continue
        for var in missing:
            problems.append(f"{item.where(('credentials', key))}: credentials.{key}: environment"
                            f" variable {var} is not set ({item.label} needs it)")
        whole = ENV_REF.fullmatch(value)
        if whole and whole.group(2) == "" and whole.group(1) not in env:
            continue  # an optional value not given
        out[key] = ENV_REF.sub(lambda m: _substitute(m, env), value)
    return out, problems


def _substitute(match: re.Match[str], env: Mapping[str, str]) -> str:
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    return default if default is not None else match.group(0)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def secret_placeholder(slug: str, field_name: str, *, optional: bool = False) -> str:
    """``${REFLOW_<SLUG>_<FIELD>}``; ``${...:-}`` for an optional secret, which apply
    leaves out when the variable is unset."""
    name = re.sub(r"[^A-Z0-9]+", "_", f"REFLOW_{slug}_{field_name}".upper()).strip("_")
    return "${" + name + (":-}" if optional else "}")


def to_spec(kind: str, data: dict[str, Any]) -> Spec:
    return SPECS[kind].model_validate(data)
