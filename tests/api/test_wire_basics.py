"""Census wire basics: auth forms, the envelope, pagination, not_found, OpenAPI."""

from __future__ import annotations

import base64

import httpx

from tests.api.conftest import Server
from tests.conftest import pg_credentials


def test_missing_and_wrong_tokens_are_401_json(server: Server) -> None:
    for headers in (
        {}, {"Authorization": "Bearer secret-token:nope"}, {"Authorization": "Token x"}
    ):
        response = httpx.get(f"{server.base_url}/api/v1/sources", headers=headers)
        assert response.status_code == 401
        assert response.json()["status"] == 401
        assert response.json()["message"]


def test_basic_auth_with_user_bearer_is_accepted(server: Server) -> None:
    basic = base64.b64encode(f"bearer:{server.workspace_token}".encode()).decode()
    response = httpx.get(
        f"{server.base_url}/api/v1/sources", headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.text
    wrong_user = base64.b64encode(f"admin:{server.workspace_token}".encode()).decode()
    response = httpx.get(
        f"{server.base_url}/api/v1/sources", headers={"Authorization": f"Basic {wrong_user}"}
    )
    assert response.status_code == 401


def test_token_matches_with_or_without_secret_token_prefix(server: Server) -> None:
    bare = server.workspace_token.removeprefix("secret-token:")
    response = httpx.get(
        f"{server.base_url}/api/v1/syncs", headers={"Authorization": f"Bearer {bare}"}
    )
    assert response.status_code == 200


def test_organization_token_cannot_use_workspace_endpoints(server: Server) -> None:
    with server.client(server.organization_token) as org:
        response = org.get("/sources")
    assert response.status_code == 403
    assert "workspace" in response.json()["message"]


def test_unknown_ids_are_not_found_in_the_envelope(api: httpx.Client) -> None:
    for path in ("/sources/987654", "/destinations/987654", "/syncs/987654",
                 "/sync_runs/987654", "/source_types/no_such_type", "/connectors/no_such_type"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["status"] == "not_found"
        assert response.json()["message"]
    assert api.post("/syncs/987654/trigger").status_code == 404
    assert api.delete("/sources/987654").status_code == 404


def test_non_integer_id_is_a_400_naming_the_parameter(api: httpx.Client) -> None:
    response = api.get("/sources/abc")
    assert response.status_code == 400
    assert "source_id" in response.json()["message"]


def test_pagination_shape_clamping_and_order(api: httpx.Client, pg_database: str) -> None:
    ids = []
    for i in range(3):
        response = api.post("/destinations", json={"service_connection": {
            "type": "postgres", "name": f"page-{i}", "credentials": pg_credentials(pg_database)}})
        assert response.status_code == 201
        ids.append(response.json()["data"]["id"])
    total = api.get("/destinations").json()["pagination"]["total_records"]

    first = api.get("/destinations", params={"per_page": 2}).json()
    assert first["status"] == "success"
    assert first["pagination"] == {
        "total_records": total, "per_page": 2, "prev_page": None, "page": 1,
        "next_page": 2, "last_page": (total + 1) // 2,
    }
    assert [d["id"] for d in first["data"]] == sorted(ids, reverse=True)[:2]  # desc by default
    assert first["next"].endswith("page=2&per_page=2") or "page=2" in first["next"]

    last = api.get(
        "/destinations", params={"per_page": 2, "page": first["pagination"]["last_page"]}
    )
    assert last.json()["pagination"]["next_page"] is None
    assert last.json()["next"] is None

    ascending = api.get("/destinations", params={"order": "asc", "per_page": 100}).json()["data"]
    assert [d["id"] for d in ascending] == sorted(d["id"] for d in ascending)
    clamped = api.get("/destinations", params={"per_page": 1000, "page": 0}).json()["pagination"]
    assert clamped["per_page"] == 100 and clamped["page"] == 1
    for id_ in ids:
        assert api.delete(f"/destinations/{id_}").json() == {"status": "deleted"}


def test_empty_collection_has_last_page_one(api: httpx.Client) -> None:
    sync_runs = api.get("/syncs", params={"per_page": 1, "page": 1}).json()["pagination"]
    assert sync_runs["last_page"] >= 1


def test_openapi_document_lists_the_census_paths(server: Server) -> None:
    doc = httpx.get(f"{server.base_url}/openapi.json").json()
    for path in ("/api/v1/sources", "/api/v1/syncs/{sync_id}/trigger", "/api/v1/sync_runs/{run_id}",
                 "/api/v1/destinations/{destination_id}/objects", "/api/v1/connectors"):
        assert path in doc["paths"], path


def test_type_catalogues_serve_configuration_fields(api: httpx.Client) -> None:
    source_type = api.get("/source_types/postgres").json()["data"]
    fields = {f["id"]: f for f in source_type["configuration_fields"]["fields"]}
    assert {"hostname", "port", "database", "user", "password"} <= set(fields)
    assert fields["password"]["is_password_type_field"] is True
    assert fields["hostname"]["rules"] == ["required"]
    assert source_type["creatable_via_api"] is True
    listing = api.get("/connectors").json()
    assert "postgres" in [c["service_name"] for c in listing["data"]]
    assert listing["pagination"]["page"] == 1
