"""The register of objects a config-as-code project manages, on both state stores:
marks show as ``slug``/``managed_by`` on the resources, a slug is unique per kind, and
a mark never outlives its object, even when the id is reused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.conftest import unique_name


def _source(api: httpx.Client, path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)")
    answer = api.post("/sources", json={"connection": {
        "type": "sqlite", "name": unique_name("src"), "credentials": {"path": str(path)}}})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["data"]["id"])


def test_marks_show_on_resources_and_die_with_their_object(
    api: httpx.Client, tmp_path: Path
) -> None:
    first = _source(api, tmp_path / "a.sqlite")
    slug = unique_name("wh").lower().replace("_", "-")
    marked = api.put(f"/managed_objects/source/{first}", json={"slug": slug})
    assert marked.status_code == 200, marked.text
    assert marked.json()["data"] == {"kind": "source", "id": first, "slug": slug,
                                     "managed_by": "reflow-project"}
    shown = api.get(f"/sources/{first}").json()["data"]
    assert (shown["slug"], shown["managed_by"]) == (slug, "reflow-project")
    listed = {s["id"]: s for s in api.get("/sources", params={"per_page": 100}).json()["data"]}
    assert listed[first]["slug"] == slug

    second = _source(api, tmp_path / "b.sqlite")
    clash = api.put(f"/managed_objects/source/{second}", json={"slug": slug})
    assert clash.status_code == 409 and clash.json()["message"].startswith("slug:")
    assert api.get(f"/sources/{second}").json()["data"]["slug"] is None
    bad = api.put(f"/managed_objects/widget/{second}", json={"slug": "x"})
    assert bad.status_code == 400 and "kind" in bad.json()["message"]

    # the newest source is deleted through the API; SQLite hands its id to the next one
    assert api.put(f"/managed_objects/source/{second}", json={"slug": slug + "-b"}).is_success
    assert api.delete(f"/sources/{second}").status_code == 200
    third = _source(api, tmp_path / "c.sqlite")
    assert api.get(f"/sources/{third}").json()["data"]["slug"] is None
    marks = {(m["kind"], m["id"]) for m in api.get("/managed_objects").json()["data"]}
    assert ("source", first) in marks and ("source", third) not in marks
    # the slug of the deleted object is free again
    assert api.put(f"/managed_objects/source/{third}", json={"slug": slug + "-b"}).is_success
    assert api.delete(f"/managed_objects/source/{first}").status_code == 200
    assert api.get(f"/sources/{first}").json()["data"]["managed_by"] is None
