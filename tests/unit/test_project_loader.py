"""Loading a project folder without a server: every problem names the file, the line
and the field; references name both ends; ${VAR}s resolve or name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow.project.loader import Item, ProjectError, load, resolve_env
from reflow.project.planner import diff

SYNC = """label: S
operation: upsert
source_attributes:
  connection_id: wh
  object: {type: model, id: m}
destination_attributes:
  connection_id: crm
  object: customers
mappings:
- from: {type: column, data: id}
  to: id
  is_primary_identifier: true
- from: {type: column, data: email}
"""


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _problems(root: Path) -> list[str]:
    with pytest.raises(ProjectError) as caught:
        load(root)
    return caught.value.problems


BASE = {
    "reflow.yml": "version: 1\n",
    "sources/wh.yml": "type: sqlite\nname: WH\ncredentials: {path: /tmp/x.sqlite}\n",
    "destinations/crm.yml": "type: sqlite\nname: CRM\n",
    "models/m.yml": "source_id: wh\nname: M\nquery_file: m.sql\n",
    "models/m.sql": "SELECT 1 AS id\n",
}


def test_a_valid_project_loads_with_inline_objects_and_sql_files(tmp_path: Path) -> None:
    files = {**BASE, "syncs/s.yml": SYNC + "  to: email\n",
             "reflow.yml": "version: 1\nsegments:\n  pro:\n    source_id: wh\n    name: Pro\n"
                           "    model_id: m\n    molecules: []\n"}
    project = load(_write(tmp_path, files))
    assert project.items["model"]["m"].spec.query == "SELECT 1 AS id"
    assert project.items["segment"]["pro"].where(("name",)) == f"{tmp_path / 'reflow.yml'}:5"
    assert [i.slug for i in project.all()] == ["wh", "m", "pro", "crm", "s"]


def test_a_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    root = _write(tmp_path, {**BASE, "syncs/s.yml": SYNC})
    assert _problems(root) == [f"{root / 'syncs/s.yml'}:13: mappings.1.to: Field required"]


def test_an_unknown_field_is_refused_where_it_is(tmp_path: Path) -> None:
    root = _write(tmp_path, {**BASE, "destinations/crm.yml": "type: sqlite\nname: CRM\nnmae: x\n"})
    assert _problems(root) == [
        f"{root / 'destinations/crm.yml'}:3: nmae: Extra inputs are not permitted"]


def test_duplicates_slugs_and_sql_files(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        **BASE, "reflow.yml": "version: 1\ndestinations:\n  crm: {type: sqlite, name: C}\n",
        "models/m.yml": "source_id: wh\nname: M\nquery_file: gone.sql\n",
        "sources/Bad Name.yml": "type: sqlite\nname: B\n",
    })
    problems = _problems(root)
    assert f"{root / 'destinations/crm.yml'}:1: destination 'crm' is also defined at" \
           f" {root / 'reflow.yml'}:3" in problems
    gone = root / "models" / "gone.sql"
    assert f"{root / 'models/m.yml'}:3: query_file: {gone} not found" in problems
    assert any("source 'Bad Name': a slug is lowercase" in p for p in problems)


def test_references_name_both_ends(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        **BASE, "sources/other.yml": "type: sqlite\nname: O\n",
        "syncs/s.yml": SYNC.replace("connection_id: wh", "connection_id: other") + "  to: e\n",
    })
    assert _problems(root) == [
        f"{root / 'syncs/s.yml'}:5: sync 's' uses model 'm' of source 'wh'"
        f" ({root / 'models/m.yml'}:1), but its own source is 'other'"]


def test_environment_variables(tmp_path: Path) -> None:
    item = Item("source", "wh", None, tmp_path / "wh.yml", {("credentials", "password"): 7})
    values = {"user": "${U}@${HOST}", "password": "${PW}", "port": 5432}
    resolved, problems = resolve_env(item, values, env={"U": "me", "HOST": "db"})
    assert resolved["user"] == "me@db" and resolved["port"] == 5432
    assert problems == [f"{tmp_path / 'wh.yml'}:7: credentials.password: environment variable"
                        " PW is not set (source 'wh' needs it)"]
    lenient, problems = resolve_env(item, values, env={}, lenient=frozenset({"password"}))
    assert "password" not in lenient and len(problems) == 2  # U and HOST still named


def test_diff_is_leaf_by_leaf_and_credentials_compare_given_keys() -> None:
    old = {"name": "a", "credentials": {"path": "/x", "busy_timeout_seconds": 30},
           "mappings": [{"to": "id"}, {"to": "email"}]}
    new = {"name": "a", "credentials": {"path": "/y"}, "mappings": [{"to": "id"}, {"to": "e"}]}
    assert diff(old, new) == [("credentials.path", "/x", "/y"),
                              ("mappings[1].to", "email", "e")]
    assert diff({"m": [1]}, {"m": [1, 2]}) == [("m", [1], [1, 2])]
