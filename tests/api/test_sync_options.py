"""Per-sync destination settings (``advanced_configuration``) through the API: validated
at sync creation with errors naming the field and the template position, served as the
object's ``advanced_configuration_field_definitions``, and used by the writer, so two
syncs on one HTTP Request destination send different requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.api.syncing import col, model, pg_source, run, sync_body
from tests.support.loopback_http import Receiver, loopback_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with loopback_receiver() as state:
        yield state


def _source_model(api: httpx.Client, conn: psycopg.Connection, schema: str, db: str) -> tuple:
    conn.execute(f'CREATE TABLE "{schema}".people (id int PRIMARY KEY, email text)')
    conn.execute(f"INSERT INTO \"{schema}\".people VALUES (1, 'a@x.org'), (2, 'b@x.org')")
    source_id = pg_source(api, db)
    return source_id, model(api, source_id, f'SELECT * FROM "{schema}".people')


def _http_destination(api: httpx.Client, url: str) -> int:
    response = api.post("/destinations", json={"service_connection": {
        "type": "http_request", "name": "CRM API",
        "credentials": {"base_url": url + "/api",
                        "headers": [{"name": "X-Key", "value": "k", "is_secret": True}]}}})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def _body(ids: tuple[int, int], dest_id: int, options: dict[str, Any]) -> dict[str, Any]:
    mappings = [col("id", key=True), col("email")]
    return sync_body(*ids, dest_id, "request", "upsert", mappings,
                     advanced_configuration=options)


@pytest.fixture
def setup(
    api: httpx.Client, receiver: Receiver, pg_conn: psycopg.Connection, pg_schema: str,
    pg_database: str,
) -> tuple[tuple[int, int], int]:
    return _source_model(api, pg_conn, pg_schema, pg_database), _http_destination(
        api, receiver.url)


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        ({"body": '{\n  "email": "{{ record["email" }}"\n}'},
         ["advanced_configuration.body", "line 2, column"]),
        ({"body": '{"e": "{{ record.emial }}"}'},
         ["advanced_configuration.body", "emial", "line 1, column 11", "not a mapped field"]),
        ({"http_endpoint": "/p/{% if record %}"},
         ["advanced_configuration.http_endpoint", "line 1"]),
        ({"http_method": "BREW"}, ["advanced_configuration.http_method", "POST"]),
        ({"batch_size": 0}, ["advanced_configuration.batch_size"]),
    ],
)
def test_bad_options_are_400_naming_field_and_position(
    api: httpx.Client, setup: tuple, options: dict[str, Any], needles: list[str]
) -> None:
    ids, dest_id = setup
    before = api.get("/syncs").json()["pagination"]["total_records"]
    response = api.post("/syncs", json=_body(ids, dest_id, options))
    assert response.status_code == 400, response.text
    for needle in needles:
        assert needle in response.json()["message"], (needle, response.json()["message"])
    assert api.get("/syncs").json()["pagination"]["total_records"] == before


def test_options_on_update_are_validated_too(api: httpx.Client, setup: tuple) -> None:
    ids, dest_id = setup
    created = api.post("/syncs", json=_body(ids, dest_id, {"http_endpoint": "/a"}))
    sync_id = created.json()["data"]["sync_id"]
    bad = api.patch(f"/syncs/{sync_id}", json={"advanced_configuration": {"body": "{% for %}"}})
    assert bad.status_code == 400 and "advanced_configuration.body" in bad.json()["message"]
    stored = api.get(f"/syncs/{sync_id}").json()["data"]["advanced_configuration"]
    assert stored == {"http_endpoint": "/a"}


def test_valid_options_reach_the_receiver_and_are_stored_normalised(
    api: httpx.Client, receiver: Receiver, setup: tuple
) -> None:
    ids, dest_id = setup
    options = {
        "http_method": "PATCH",
        "http_endpoint": "/people/{{ record['id'] }}",
        "body_template": '{"mail": "{{ record["email"] }}", "src": "reflow"}',  # the old key
        "custom_key": "kept",
    }
    created = api.post("/syncs", json=_body(ids, dest_id, options))
    assert created.status_code == 200, created.text
    sync_id = created.json()["data"]["sync_id"]
    stored = api.get(f"/syncs/{sync_id}").json()["data"]["advanced_configuration"]
    assert stored == {
        "http_method": "PATCH", "http_endpoint": "/people/{{ record['id'] }}",
        "body": options["body_template"], "custom_key": "kept",
    }

    assert run(api, sync_id)["records_processed"] == 2
    sent = sorted(receiver.with_body(), key=lambda r: r.path)
    assert [(r.method, r.path, r.json()) for r in sent] == [
        ("PATCH", "/api/people/1", {"mail": "a@x.org", "src": "reflow"}),
        ("PATCH", "/api/people/2", {"mail": "b@x.org", "src": "reflow"}),
    ]
    assert all(r.headers.get("X-Key") == "k" for r in sent)


def test_two_syncs_on_one_destination_send_their_own_requests(
    api: httpx.Client, receiver: Receiver, setup: tuple
) -> None:
    ids, dest_id = setup
    one = api.post("/syncs", json=_body(ids, dest_id, {"http_endpoint": "/contacts"}))
    batched = api.post("/syncs", json=_body(ids, dest_id, {
        "http_endpoint": "/bulk", "http_method": "PUT", "batch_size": 10,
        "body": '{"ids": [{% for r in records %}{{ r.id }},{% endfor %}]}',
    }))
    assert one.status_code == 200 and batched.status_code == 200, (one.text, batched.text)

    run(api, one.json()["data"]["sync_id"])
    run(api, batched.json()["data"]["sync_id"])
    sent = [(r.method, r.path, r.json()) for r in receiver.with_body()]
    contacts = sorted((s for s in sent if s[1] == "/api/contacts"), key=lambda s: s[2]["id"])
    assert contacts == [("POST", "/api/contacts", {"id": 1, "email": "a@x.org"}),
                        ("POST", "/api/contacts", {"id": 2, "email": "b@x.org"})]
    assert [s for s in sent if s[1] == "/api/bulk"] == [("PUT", "/api/bulk", {"ids": [1, 2]})]


def test_object_serves_the_field_definitions(api: httpx.Client, setup: tuple) -> None:
    _, dest_id = setup
    response = api.get(f"/destinations/{dest_id}/objects/request")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    definitions = {d["name"]: d for d in data["advanced_configuration_field_definitions"]}
    assert definitions["http_method"] == {
        "name": "http_method", "type": "string", "label": "Request method",
        "input_type": "dropdown", "placeholder": None, "sort_order": 1, "required": False,
        "default": "POST", "supported_values": ["POST", "PUT", "PATCH", "DELETE", "GET"],
    }
    assert definitions["http_endpoint"]["placeholder"] == "/users"
    assert definitions["batch_size"]["type"] == "integer"
    assert definitions["body"]["input_type"] == "textarea"
    assert data["configurable_field_definitions"]["http_endpoint"] == "string"
    assert data["configurable_field_definitions"]["batch_size"] == "integer"


def test_file_sync_needs_a_format_for_an_unknown_extension(
    api: httpx.Client, setup: tuple, tmp_path: Any
) -> None:
    ids, _ = setup
    dest = api.post("/destinations", json={"service_connection": {
        "type": "local_files", "credentials": {"directory": str(tmp_path)}}})
    assert dest.status_code == 201, dest.text
    mappings = [col("id", key=True), col("email")]
    body = sync_body(*ids, dest.json()["data"]["id"], "out/{{ run_id }}.txt", "upsert", mappings)
    missing = api.post("/syncs", json=body)
    assert missing.status_code == 400
    assert "advanced_configuration.file_format" in missing.json()["message"]
    body["advanced_configuration"] = {"file_format": "csv", "csv_delimiter": "|"}
    created = api.post("/syncs", json=body)
    assert created.status_code == 200, created.text
    run(api, created.json()["data"]["sync_id"])
    (written,) = (tmp_path / "out").iterdir()
    assert written.read_text().splitlines()[0] == '"id"|"email"'
