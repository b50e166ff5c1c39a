"""Census fidelity: what a strict Census client sends is honoured or refused with a 400
naming the field, never silently ignored; what it reads back has the documented shape."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.conftest import Server, wait_for_run
from tests.api.polling import wait_refresh
from tests.api.syncing import col, connections, model, run, start, sync_body
from tests.conftest import pg_credentials, unique_name


@dataclass
class World:
    source: int
    dest: int
    model: int
    schema: str

    def body(self, **extra: Any) -> dict[str, Any]:
        mappings = extra.pop("mappings", [col("pid", "id", key=True), col("name")])
        return sync_body(self.source, self.model, self.dest, f"{self.schema}.target",
                         extra.pop("operation", "upsert"), mappings, **extra)


@pytest.fixture(scope="module")
def world(server: Server, pg_database: str) -> World:
    """One source, destination, model and target table per state store."""
    schema = unique_name("fid")
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=pg_database,
                         autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".people AS'
                     " SELECT g AS pid, 'n' || g AS name, g AS version"
                     " FROM generate_series(1, 3) g")
        conn.execute(f'CREATE TABLE "{schema}".target (id int PRIMARY KEY, name text)')
    with server.client() as api:
        source_id, dest_id = connections(api, pg_database)
        model_id = model(api, source_id, f'SELECT * FROM "{schema}".people', name=schema)
    return World(source_id, dest_id, model_id, schema)


def _create(api: httpx.Client, body: dict[str, Any]) -> int:
    response = api.post("/syncs", json=body)
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["sync_id"])


def _refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error" and field in body["message"], body


def test_threshold_percent_is_a_percentage(api: httpx.Client, world: World) -> None:
    bad = api.post("/syncs", json=world.body(failed_record_notifications_threshold_percent=150))
    _refused(bad, "failed_record_notifications_threshold_percent")
    assert _create(api, world.body(failed_record_notifications_threshold_percent=100))


def test_mapping_operation_takes_only_documented_values(api: httpx.Client, world: World) -> None:
    mapping = {**col("name"), "operation": "sideways"}
    bad = api.post("/syncs", json=world.body(mappings=[col("pid", "id", key=True), mapping]))
    _refused(bad, "mappings[1].operation")


def test_mapping_from_a_column_the_model_lacks_is_refused_at_save(
    api: httpx.Client, world: World
) -> None:
    bad = api.post("/syncs", json=world.body(
        mappings=[col("pid", "id", key=True), col("nickname", "name")]))
    _refused(bad, "mappings[1].from.data")
    assert "nickname" in bad.json()["message"]
    sync_id = _create(api, world.body())
    patched = api.patch(f"/syncs/{sync_id}", json={
        "mappings": [col("pid", "id", key=True), col("NAME", "name")]})  # case folds
    assert patched.status_code == 200, patched.text


def test_a_column_added_after_the_model_was_saved_can_be_mapped(
    api: httpx.Client, world: World, pg_conn: psycopg.Connection, pg_schema: str
) -> None:
    """The model's cached columns are stale; the source is asked before refusing."""
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".grown AS SELECT 1 AS pid')
    grown = model(api, world.source, f'SELECT * FROM "{pg_schema}".grown',
                  name=unique_name("grown"))
    pg_conn.execute(f'ALTER TABLE "{pg_schema}".grown ADD COLUMN nick text')
    body = sync_body(world.source, grown, world.dest, f"{world.schema}.target", "upsert",
                     [col("pid", "id", key=True), col("nick", "name")])
    assert _create(api, body)


def test_cohort_id_is_refused_rather_than_ignored(api: httpx.Client, world: World) -> None:
    body = world.body()
    body["source_attributes"]["cohort_id"] = 5
    _refused(api.post("/syncs", json=body), "source_attributes.cohort_id")


def test_legacy_high_water_mark_attributes_is_honoured(api: httpx.Client, world: World) -> None:
    body = world.body(operation="append", high_water_mark_attributes={
        "use_high_water_mark_diff_type": True, "column_name": "version"})
    sync_id = _create(api, body)
    echoed = api.get(f"/syncs/{sync_id}").json()["data"]
    assert echoed["high_water_mark_attribute"] == "version"
    bad = world.body(operation="append", high_water_mark_attributes={
        "use_high_water_mark_diff_type": True, "column_name": "nope"})
    _refused(api.post("/syncs", json=bad), "high_water_mark_attribute")


def test_dataset_source_is_echoed_as_a_dataset(api: httpx.Client, world: World) -> None:
    body = world.body()
    body["source_attributes"]["object"] = {"type": "dataset", "id": world.model}
    sync_id = _create(api, body)
    obj = api.get(f"/syncs/{sync_id}").json()["data"]["source_attributes"]["object"]
    assert (obj["type"], obj["id"], obj["dataset_id"]) == ("dataset", world.model, world.model)


def test_segment_source_names_the_segment_at_the_top(api: httpx.Client, world: World) -> None:
    created = api.post(f"/sources/{world.source}/filter_segments", json={
        "name": unique_name("seg"), "dataset_id": world.model,
        "molecules": [{"attribute": "pid", "attribute_type": "property",
                       "operator": "greaterthan", "value": 1}]})
    assert created.status_code == 201, created.text
    segment_id = created.json()["data"]["id"]
    body = world.body()
    body["source_attributes"] = {"connection_id": world.source, "filter_segment_id": segment_id,
                                 "object": {"type": "dataset", "id": world.model}}
    sync_id = _create(api, body)
    attrs = api.get(f"/syncs/{sync_id}").json()["data"]["source_attributes"]
    assert attrs["filter_segment_id"] == segment_id
    assert attrs["object"]["type"] == "filter_segment_source"


def test_legacy_table_source_by_id(api: httpx.Client, world: World) -> None:
    key = api.post(f"/sources/{world.source}/refresh_tables").json()["refresh_key"]
    wait_refresh(api, f"/sources/{world.source}/refresh_tables_status", key)
    objects = api.get(f"/sources/{world.source}/objects", params={"per_page": 1000}).json()
    table = next(o for o in objects["data"] if o["type"] == "table"
                 and o["table_schema"] == world.schema and o["table_name"] == "people")
    body = world.body()
    body["source_attributes"]["object"] = {"type": "table", "id": table["id"]}
    sync_id = _create(api, body)
    obj = api.get(f"/syncs/{sync_id}").json()["data"]["source_attributes"]["object"]
    assert (obj["type"], obj["table_schema"], obj["table_name"]) == (
        "table", world.schema, "people")
    body["source_attributes"]["object"] = {"type": "table", "id": 10**9}
    _refused(api.post("/syncs", json=body), "source_attributes.object.id")


def _after(sync_id: int) -> dict[str, Any]:
    return {"type": "triggered", "triggers": {"sync_sequence": {"sync_id": sync_id}}}


def test_sync_sequences_cannot_form_a_cycle(api: httpx.Client, world: World) -> None:
    first = _create(api, world.body())
    second = _create(api, world.body(mode=_after(first)))
    third = _create(api, world.body(mode=_after(second)))
    _refused(api.patch(f"/syncs/{first}", json={"mode": _after(third)}),
             "mode.triggers.sync_sequence.sync_id")
    _refused(api.patch(f"/syncs/{first}", json={"mode": _after(first)}),
             "mode.triggers.sync_sequence.sync_id")
    _refused(api.patch(f"/syncs/{first}", json={"triggers": {"sync_sequence": {
        "sync_id": second}}}), "triggers.sync_sequence.sync_id")
    mode = api.get(f"/syncs/{first}").json()["data"]["mode"]
    assert "sync_sequence" not in mode["triggers"]


def test_flat_schedule_patch_clears_keys_of_the_old_frequency(
    api: httpx.Client, world: World
) -> None:
    sync_id = _create(api, world.body(schedule_frequency="expression",
                                      cron_expression="5 4 * * *"))
    patched = api.patch(f"/syncs/{sync_id}", json={
        "schedule_frequency": "weekly", "schedule_day": "Monday", "schedule_hour": 3,
        "schedule_minute": 0})
    assert patched.status_code == 200, patched.text
    data = api.get(f"/syncs/{sync_id}").json()["data"]
    assert data["schedule_frequency"] == "weekly" and data["cron_expression"] is None
    assert "cron_expression" not in data["mode"]["triggers"]["schedule"]


def test_cancelling_a_finished_run_is_refused_and_changes_nothing(
    api: httpx.Client, world: World
) -> None:
    done = run(api, _create(api, world.body()))
    refused = api.post(f"/sync_runs/{done['id']}/cancel")
    assert refused.status_code == 409, refused.text
    assert refused.json()["status"] == "error" and str(done["id"]) in refused.json()["message"]
    after = api.get(f"/sync_runs/{done['id']}").json()["data"]
    assert (after["status"], after["canceled"]) == ("completed", False)


def test_status_reflects_the_last_run_that_ran(
    api: httpx.Client, world: World, pg_database: str
) -> None:
    slow = model(api, world.source, f'SELECT *, pg_sleep(0.5) IS NULL AS s'
                                    f' FROM "{world.schema}".people', name=unique_name("slow"))
    body = sync_body(world.source, slow, world.dest, f"{world.schema}.target", "upsert",
                     [col("pid", "id", key=True), col("name")])
    sync_id = _create(api, body)
    first = start(api, sync_id)
    skipped = wait_for_run(api, start(api, sync_id))
    assert skipped["status"] == "skipped"
    assert wait_for_run(api, first)["status"] == "completed"
    assert api.get(f"/syncs/{sync_id}").json()["data"]["status"] == "Up to Date"


def test_management_link_for_a_missing_segment_is_404(api: httpx.Client, world: World) -> None:
    missing = api.post(
        f"/sources/{world.source}/filter_segments/999999999/segment_management_links", json={})
    assert missing.status_code == 404, missing.text


def test_a_new_destination_embeds_the_objects_it_has(
    api: httpx.Client, world: World, pg_database: str
) -> None:
    """The create response lists the destination's tables, as a GET just after does."""
    created = api.post("/destinations", json={"service_connection": {
        "type": "postgres", "name": "Tables", "credentials": pg_credentials(pg_database)}})
    assert created.status_code == 201, created.text
    names = {o["full_name"] for o in created.json()["data"]["objects"]}
    assert f"{world.schema}.target" in names


def test_a_cancel_during_the_diff_sends_nothing(
    api: httpx.Client, world: World, pg_conn: psycopg.Connection, pg_schema: str
) -> None:
    """The in-warehouse diff is one long statement; a cancel that arrives while it runs
    stops the run before its first batch (it used to deliver that batch first)."""
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".target (id int PRIMARY KEY, name text)')
    slow = model(api, world.source, "SELECT g AS pid, 'n' || g AS name"
                                    " FROM generate_series(1, 3) g CROSS JOIN pg_sleep(1.5)",
                 name=unique_name("diff"))
    sync_id = _create(api, sync_body(world.source, slow, world.dest, f"{pg_schema}.target",
                                     "upsert", [col("pid", "id", key=True), col("name")]))
    run_id = start(api, sync_id)
    deadline = time.monotonic() + 60
    while (current := api.get(f"/sync_runs/{run_id}").json()["data"])["current_step"] != (
            "Unloading data from warehouse"):
        assert current["status"] in ("queued", "working") and time.monotonic() < deadline
        time.sleep(0.05)
    assert api.post(f"/sync_runs/{run_id}/cancel").status_code == 200
    ended = wait_for_run(api, run_id)
    assert (ended["status"], ended["canceled"]) == ("failed", True), ended
    assert not ended["records_processed"]
    assert pg_conn.execute(f'SELECT count(*) FROM "{pg_schema}".target').fetchone() == (0,)
