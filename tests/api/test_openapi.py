"""``/openapi.json``, ``/docs`` and ``/redoc`` (issue 17 §8, §9): security schemes on
the operations that need a token, every request body and every answer described by a
model, and the documentation pages served without a CDN."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.api.app import create_app
from reflow.config import Settings
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize

WRITES = ("post", "patch", "put")
#: Write operations that take no body at all (they act on the resource in the path).
BODILESS = {
    ("/api/v1/destinations/{destination_id}/refresh_objects", "post"),
    ("/api/v1/destinations/{destination_id}/objects/{full_name}/refresh_fields", "post"),
    ("/api/v1/sync_runs/{run_id}/cancel", "post"),
    ("/api/v1/invitations/{invitation_id}/revoke", "post"),
    ("/api/v1/invitations/{invitation_id}/accept", "post"),
    ("/api/v1/sync_management_links/{link_id}/revoke", "post"),
    ("/api/v1/segment_management_links/{link_id}/revoke", "post"),
    ("/api/v1/source_connect_links/{link_id}/revoke", "post"),
    ("/api/v1/destination_connect_links/{link_id}/revoke", "post"),
    ("/api/v1/sources/{source_id}/refresh_tables", "post"),
    ("/api/v1/sources/{source_id}/tables/{table_id}/refresh_columns", "post"),
    ("/api/v1/sources/{source_id}/models/{model_id}/refresh_columns", "post"),
    ("/api/v1/datasets/{dataset_id}/refresh_columns", "post"),
    ("/api/v1/projects/{project_id}/refresh", "post"),
}


@pytest.fixture(scope="module")
def app_client() -> Iterator[tuple[TestClient, str]]:
    runtime = Runtime.from_settings(Settings(home=Path(tempfile.mkdtemp(prefix="reflow-oas-"))))
    token = initialize(runtime.engine).workspace_token
    with TestClient(create_app(runtime)) as client:
        yield client, token
    runtime.engine.dispose()


@pytest.fixture(scope="module")
def spec(app_client: tuple[TestClient, str]) -> dict[str, Any]:
    response = app_client[0].get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_bearer_and_basic_schemes_guard_every_token_operation(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["basicAuth"] == {**schemes["basicAuth"], "type": "http", "scheme": "basic"}
    unguarded = []
    for path, method, operation in _operations(spec):
        public = path.startswith("/api/v1/embedded/") or path.startswith("/ingest/")
        if not public and operation.get("security") != [{"bearerAuth": []}, {"basicAuth": []}]:
            unguarded.append((method, path))
    assert unguarded == []
    ingest = spec["paths"]["/ingest/{source_id}/{topic_name}"]["post"]
    assert ingest["security"] == [{"ingestionSecret": []}]


def test_basic_credentials_as_swagger_sends_them_work(app_client: tuple[TestClient, str]) -> None:
    client, token = app_client
    assert client.get("/api/v1/sources", auth=("bearer", token)).status_code == 200
    assert client.get("/api/v1/sources", auth=("bearer", "wrong")).status_code == 401


def test_every_request_body_is_a_named_model(spec: dict[str, Any]) -> None:
    missing = []
    for path, method, operation in _operations(spec):
        if method not in WRITES or (path, method) in BODILESS:
            continue
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "$ref" not in schema.get("schema", {}) and path != "/ingest/{source_id}/{topic_name}":
            missing.append((method, path))
    assert missing == []
    writes = [(p, m) for p, m, _ in _operations(spec) if m in WRITES]
    # the 52 the issue counted, plus PUT /managed_objects/{kind}/{object_id} (config as code)
    # and POST /syncs/preview (the dry run, issue 13)
    assert len(writes) == 54


@pytest.mark.parametrize(
    ("path", "method", "fields", "required"),
    [
        ("/api/v1/sources", "post", {"connection"}, True),
        ("/api/v1/destinations", "post", {"service_connection"}, True),
        ("/api/v1/syncs", "post", {"operation", "source_attributes", "destination_attributes",
                                   "mappings", "schedule_frequency", "validate_only"}, True),
        ("/api/v1/syncs/{sync_id}", "patch", {"mappings", "paused", "schedule_frequency"}, False),
        ("/api/v1/syncs/{sync_id}/trigger", "post", {"force_full_sync"}, False),
        ("/api/v1/sources/{source_id}/models", "post", {"name", "query"}, True),
        ("/api/v1/webhooks", "post", {"name", "endpoint", "events"}, True),
        ("/api/v1/workspaces", "post", {"name", "return_workspace_api_key"}, True),
    ],
)
def test_census_bodies_are_described_field_by_field(
    spec: dict[str, Any], path: str, method: str, fields: set[str], required: bool
) -> None:
    body = spec["paths"][path][method]["requestBody"]
    assert body["required"] is required  # no required field: Airflow's empty body is fine
    schema = _resolve(spec, body["content"]["application/json"]["schema"])
    assert fields <= set(schema["properties"])
    assert schema.get("additionalProperties") is True  # Census clients send extra fields


def test_sync_mappings_and_operations_are_typed(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/api/v1/syncs"]["post"]["requestBody"]
    schema = _resolve(spec, body["content"]["application/json"]["schema"])
    operation = _resolve(spec, schema["properties"]["operation"])
    assert set(operation["enum"]) >= {"upsert", "update", "create", "mirror", "append", "delete"}
    mapping = _resolve(spec, schema["properties"]["mappings"]["items"])
    assert {"from", "to", "is_primary_identifier"} <= set(mapping["properties"])


def test_every_operation_describes_what_it_answers(spec: dict[str, Any]) -> None:
    undescribed = []
    for path, method, operation in _operations(spec):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)  # Reflow answers 400, never 422
        for code, response in responses.items():
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if not schema or _resolve(spec, schema) == {}:
                undescribed.append((method, path, code))
        for code in ("400", "401", "404"):
            error = responses[code]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path, code)
    assert undescribed == []


def test_envelopes_carry_typed_data_and_pagination(spec: dict[str, Any]) -> None:
    one = spec["paths"]["/api/v1/syncs/{sync_id}"]["get"]["responses"]["200"]
    envelope = _resolve(spec, one["content"]["application/json"]["schema"])
    assert set(envelope["required"]) == {"status", "data"}
    sync = _resolve(spec, envelope["properties"]["data"])
    assert {"id", "operation", "mappings", "source_attributes"} <= set(sync["properties"])
    assert sync["properties"]["id"]["type"] == "integer"
    many = spec["paths"]["/api/v1/sources"]["get"]["responses"]["200"]
    listing = _resolve(spec, many["content"]["application/json"]["schema"])
    assert {"data", "pagination", "next"} <= set(listing["properties"])
    pagination = _resolve(spec, listing["properties"]["pagination"]["anyOf"][0])
    assert {"total_records", "page", "per_page", "next_page", "last_page"} <= set(
        pagination["properties"]
    )


def test_integer_parameters_declare_the_64_bit_range(spec: dict[str, Any]) -> None:
    for path, method, operation in _operations(spec):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            if schema.get("type") == "integer":
                assert schema["maximum"] == 2**63 - 1, (method, path, parameter["name"])
                assert schema["minimum"] == -(2**63), (method, path, parameter["name"])


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_every_asset_from_the_app_itself(
    app_client: tuple[TestClient, str], page: str
) -> None:
    client, _ = app_client
    html = client.get(page)
    assert html.status_code == 200
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html.text)
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), f"{page} loads {asset} from another host"
        fetched = client.get(asset)
        assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
    assert "cdn" not in html.text.lower()
    assert "fonts.googleapis" not in html.text


def test_empty_bodies_and_versioned_json_are_still_read(
    app_client: tuple[TestClient, str],
) -> None:
    client, token = app_client
    auth = {"Authorization": f"Bearer {token}"}
    empty = client.post("/api/v1/sources", headers=auth)  # parsed as {}: the service answers
    assert empty.status_code == 400 and "connection" in empty.json()["message"]
    versioned = client.post(
        "/api/v1/sources",
        content=b'{"connection": {"type": "oracle_v1", "credentials": {}}}',
        headers={**auth, "Content-Type": "application/json;version=2"},
    )
    assert versioned.status_code == 400 and "oracle_v1" in versioned.json()["message"]
    trigger = client.post("/api/v1/syncs/12345/trigger", headers=auth)  # Airflow posts none
    assert trigger.status_code == 404 and trigger.json()["status"] == "not_found"


def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    validate(spec)  # raises on any structural error (a bad $ref, a misplaced keyword)
