"""Every operation end to end: API -> engine -> real PostgreSQL destination."""

from __future__ import annotations

import httpx
import psycopg

from tests.api.syncing import col, connections, create_sync, model, records, rows, run, sync_body


def _people(conn: psycopg.Connection, schema: str, ids: range, tag: str = "v1") -> None:
    conn.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".people (pid int, name text)')
    conn.execute(f'TRUNCATE "{schema}".people')
    conn.execute(
        f"INSERT INTO \"{schema}\".people SELECT g, '{tag}-' || g"
        " FROM generate_series(%s::int, %s::int) g",
        (ids.start, ids.stop - 1),
    )


def _target(conn: psycopg.Connection, schema: str, existing: dict[int, str]) -> str:
    conn.execute(f'CREATE TABLE "{schema}".target (id int PRIMARY KEY, name text)')
    for key, name in existing.items():
        conn.execute(f'INSERT INTO "{schema}".target VALUES (%s, %s)', (key, name))
    return f"{schema}.target"


def _setup(api: httpx.Client, db: str, schema: str, operation: str, obj: str, **extra: object):
    source_id, dest_id = connections(api, db)
    model_id = model(api, source_id, f'SELECT * FROM "{schema}".people')
    mappings = [col("pid", "id", key=True), col("name")]
    return create_sync(api, source_id, model_id, dest_id, obj, operation, mappings, **extra)


def _dest(conn: psycopg.Connection, schema: str) -> dict[int, str]:
    return dict(rows(conn, f'SELECT id, name FROM "{schema}".target'))


def test_update_only_updates_existing_and_rejects_the_rest(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, range(1, 9))
    obj = _target(pg_conn, pg_schema, {i: "old" for i in range(1, 6)})
    sync_id = _setup(api, pg_database, pg_schema, "update", obj)

    first = run(api, sync_id)
    assert (first["records_processed"], first["records_updated"], first["records_failed"]) == (
        8, 5, 3)
    assert _dest(pg_conn, pg_schema) == {i: f"v1-{i}" for i in range(1, 6)}
    rejected = records(api, first["id"], status="rejected")
    assert sorted(r["identifier"] for r in rejected) == ["6", "7", "8"]
    assert "no record with id = 6" in next(r for r in rejected if r["identifier"] == "6")[
        "status_message"]
    assert all(r["operation"] == "update" for r in rejected)

    # Rejected records are retried on the next run; once they exist they are updated.
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".target VALUES (6, 'old')")
    second = run(api, sync_id)
    assert (second["records_processed"], second["records_updated"], second["records_failed"]) == (
        3, 1, 2)
    assert _dest(pg_conn, pg_schema)[6] == "v1-6"


def test_insert_never_overwrites(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, range(1, 4))
    obj = _target(pg_conn, pg_schema, {1: "kept"})
    sync_id = _setup(api, pg_database, pg_schema, "create", obj)  # create = insert

    assert api.get(f"/syncs/{sync_id}").json()["data"]["operation"] == "insert"
    first = run(api, sync_id)
    # A record already present is left alone and not counted as a failure.
    assert (first["records_updated"], first["records_failed"]) == (3, 0)
    assert _dest(pg_conn, pg_schema) == {1: "kept", 2: "v1-2", 3: "v1-3"}

    _people(pg_conn, pg_schema, range(1, 5), tag="v2")
    second = run(api, sync_id)
    assert second["records_processed"] == 4
    assert _dest(pg_conn, pg_schema) == {1: "kept", 2: "v1-2", 3: "v1-3", 4: "v2-4"}


def test_mirror_deletes_only_what_reflow_delivered(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, range(1, 6))
    obj = _target(pg_conn, pg_schema, {100: "not ours"})
    sync_id = _setup(api, pg_database, pg_schema, "mirror", obj)

    first = run(api, sync_id)
    assert first["source_record_deletes"] == 0
    assert len(_dest(pg_conn, pg_schema)) == 6

    pg_conn.execute(f'DELETE FROM "{pg_schema}".people WHERE pid >= 4')
    pg_conn.execute(f"UPDATE \"{pg_schema}\".people SET name = 'changed' WHERE pid = 1")
    second = run(api, sync_id)
    assert second["source_record_deletes"] == 2
    assert second["source_record_updates"] == 1
    assert second["records_processed"] == 3
    assert _dest(pg_conn, pg_schema) == {1: "changed", 2: "v1-2", 3: "v1-3", 100: "not ours"}
    ops = {r["identifier"]: r["operation"] for r in records(api, second["id"], status="succeeded")}
    assert ops == {"1": "upsert", "4": "delete", "5": "delete"}

    third = run(api, sync_id)
    assert (third["source_record_deletes"], third["records_processed"]) == (0, 0)


def test_append_sends_new_and_changed_rows_as_new_records(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, range(1, 4))
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".target (seq bigserial, id int, name text)')
    sync_id = _setup(api, pg_database, pg_schema, "append", f"{pg_schema}.target")

    assert run(api, sync_id)["records_updated"] == 3
    pg_conn.execute(f"UPDATE \"{pg_schema}\".people SET name = 'changed' WHERE pid = 2")
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".people VALUES (4, 'v1-4')")
    second = run(api, sync_id)
    assert second["records_updated"] == 2
    events = rows(pg_conn, f'SELECT id, name FROM "{pg_schema}".target ORDER BY seq')
    assert events == [(1, "v1-1"), (2, "v1-2"), (3, "v1-3"), (2, "changed"), (4, "v1-4")]
    refused = api.post(f"/syncs/{sync_id}/trigger", params={"force_full_sync": "true"})
    assert refused.status_code == 400 and "force_full_sync" in refused.json()["message"]


def test_append_high_water_mark_skipping_current_records(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".events (eid int, at timestamptz)')
    pg_conn.execute(f"""INSERT INTO "{pg_schema}".events
        SELECT g, timestamptz '2024-01-01' + g * interval '1 day' FROM generate_series(1, 3) g""")
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".target (eid int, at timestamptz)')
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".events')
    body = sync_body(source_id, model_id, dest_id, f"{pg_schema}.target", "append",
                     [col("eid", key=True), col("at")],
                     high_water_mark_attribute="nope")
    bad = api.post("/syncs", json=body)
    assert bad.status_code == 400 and "high_water_mark_attribute" in bad.json()["message"]
    body.update(high_water_mark_attribute="at", historical_sync_operation="skip_current_records")
    created = api.post("/syncs", json=body)
    assert created.status_code == 200, created.text
    sync_id = created.json()["data"]["sync_id"]

    assert run(api, sync_id)["records_processed"] == 0
    pg_conn.execute(f"""INSERT INTO "{pg_schema}".events
        SELECT g, timestamptz '2024-01-01' + g * interval '1 day' FROM generate_series(4, 5) g""")
    second = run(api, sync_id)
    # previous mark (day 3) <= at < new mark (day 5): day 5 waits for the next run
    assert second["records_processed"] == 2
    assert sorted(r[0] for r in rows(pg_conn, f'SELECT eid FROM "{pg_schema}".target')) == [3, 4]
    assert run(api, sync_id)["records_processed"] == 0


def test_append_backfill_and_options_only_for_append(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, range(1, 3))
    obj = _target(pg_conn, pg_schema, {})
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
    mappings = [col("pid", "id", key=True), col("name")]
    wrong = api.post("/syncs", json=sync_body(source_id, model_id, dest_id, obj, "upsert", mappings,
                                              historical_sync_operation="backfill_all_records"))
    assert wrong.status_code == 400
    assert "historical_sync_operation" in wrong.json()["message"]
    bad_enum = api.post("/syncs", json=sync_body(source_id, model_id, dest_id, obj, "append",
                                                 mappings, historical_sync_operation="all"))
    assert bad_enum.status_code == 400
    sync_id = create_sync(api, source_id, model_id, dest_id, obj, "append", mappings,
                          historical_sync_operation="backfill_all_records")
    assert run(api, sync_id)["records_processed"] == 2


def test_delete_removes_the_models_keys(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    _people(pg_conn, pg_schema, range(2, 5))
    obj = _target(pg_conn, pg_schema, {i: "x" for i in range(1, 11)})
    sync_id = _setup(api, pg_database, pg_schema, "delete", obj)
    first = run(api, sync_id)
    assert first["records_updated"] == 3
    assert sorted(_dest(pg_conn, pg_schema)) == [1, 5, 6, 7, 8, 9, 10]
    assert run(api, sync_id)["records_processed"] == 0


def test_unsupported_operation_is_refused_at_creation(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str, tmp_path
) -> None:
    _people(pg_conn, pg_schema, range(1, 2))
    source_id, _ = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
    files = api.post("/destinations", json={"service_connection": {
        "type": "local_files", "name": "Files", "credentials": {"directory": str(tmp_path)}}})
    assert files.status_code == 201, files.text
    before = api.get("/syncs").json()["pagination"]["total_records"]
    response = api.post("/syncs", json=sync_body(
        source_id, model_id, files.json()["data"]["id"], "people.csv", "delete",
        [col("pid", key=True)]))
    assert response.status_code == 400
    assert response.json()["status"] == "error"
    assert "operation 'delete' is not supported" in response.json()["message"]
    assert api.get("/syncs").json()["pagination"]["total_records"] == before


def test_sync_all_properties_and_unsupported_mappings(
    api: httpx.Client, pg_conn: psycopg.Connection, pg_schema: str, pg_database: str
) -> None:
    pg_conn.execute(f"""CREATE TABLE "{pg_schema}".people AS
        SELECT 1 AS pid, 'Ada' AS "FullName", 'x' AS extra""")
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".target (id int PRIMARY KEY, full_name text)')
    source_id, dest_id = connections(api, pg_database)
    model_id = model(api, source_id, f'SELECT * FROM "{pg_schema}".people')
    obj = f"{pg_schema}.target"
    for mapping, named in [
        ({"from": {"type": "segment_membership", "data": {"identify_by": "name"}}, "to": "x"},
         "mappings[1].from: a segment_membership mapping needs a segment as the sync's"
         " source (source_attributes.object.type = segment)"),
        ({**col("extra", "full_name"), "lookup_object": "user", "lookup_field": "name"},
         "mappings[1].lookup_object: Postgres does not support lookups"),
    ]:
        refused = api.post("/syncs", json=sync_body(
            source_id, model_id, dest_id, obj, "upsert", [col("pid", "id", key=True), mapping]))
        assert refused.status_code == 400 and refused.json()["message"] == named
    bad = api.post("/syncs", json=sync_body(
        source_id, model_id, dest_id, obj, "upsert", [col("pid", "id", key=True)],
        field_behavior="sync_all_properties", field_normalization="kebab"))
    assert bad.status_code == 400 and "field_normalization" in bad.json()["message"]

    sync_id = create_sync(api, source_id, model_id, dest_id, obj, "upsert",
                          [col("pid", "id", key=True)], field_behavior="sync_all_properties",
                          field_normalization="snake_case")
    run(api, sync_id)
    # "FullName" -> full_name exists; "extra" has no field and is not synced (no ALTER TABLE).
    assert rows(pg_conn, f'SELECT id, full_name FROM "{pg_schema}".target') == [(1, "Ada")]
