"""The custom_api connector against a real JSON-RPC server on loopback."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pyarrow as pa
import pytest

from reflow.connectors.base import DestinationConnector, WriteContext
from reflow.connectors.destinations.custom_api import (
    CustomApiConfig,
    CustomApiDestination,
    define_custom_type,
    encode,
    mask_query,
)
from reflow.connectors.errors import ObjectNotFound, TerminalError, TransientError
from reflow.connectors.testing import DestinationConformance
from tests.support.custom_destination_server import CustomDestinationServer

KEY = "k-" + "x" * 10


@pytest.fixture(scope="module")
def rpc_server() -> Iterator[CustomDestinationServer]:
    with CustomDestinationServer(api_key=KEY) as srv:
        yield srv


def _connector(url: str, token: str | None = KEY, **extra: Any) -> CustomApiDestination:
    creds: dict[str, Any] = {"webhook_url": url, "api_version": 1, **extra}
    if token is not None:
        creds["auth_token"] = token
    return CustomApiDestination(CustomApiConfig.model_validate(creds))


class TestCustomApiDestination(DestinationConformance):
    @pytest.fixture
    def destination(self, rpc_server: CustomDestinationServer) -> Iterator[DestinationConnector]:
        rpc_server.state.records["contact"].clear()
        conn = _connector(rpc_server.url)
        yield conn
        conn.close()

    @pytest.fixture
    def object_name(self) -> str:
        return "contact"

    @pytest.fixture
    def read_back(self, rpc_server: CustomDestinationServer) -> Callable[[], list[dict[str, Any]]]:
        return lambda: list(rpc_server.state.records["contact"].values())

    @pytest.fixture
    def bad_destination(
        self, rpc_server: CustomDestinationServer
    ) -> Iterator[DestinationConnector]:
        conn = _connector(rpc_server.url, token="wrong")
        yield conn
        conn.close()


def _ctx(fields: tuple[str, ...], key: str = "id", obj: str = "contact") -> WriteContext:
    return WriteContext(sync_id=7, run_id=99, object_name=obj, key_field=key, fields=fields)


def test_bad_credentials_carry_the_servers_own_message(rpc_server: CustomDestinationServer) -> None:
    steps = _connector(rpc_server.url, token="wrong").test_connection()
    assert steps[-1].status == "failed"
    assert steps[-1].message == "Acme rejected the API key (HTTP 401)"


def test_unreachable_server_fails_the_test_and_writes_are_transient() -> None:
    conn = _connector("http://127.0.0.1:9/census")
    steps = conn.test_connection()
    assert steps[0].status == "failed" and "cannot reach" in (steps[0].message or "")
    with pytest.raises(TransientError):
        conn.list_objects()


def test_json_rpc_error_on_metadata_is_terminal_with_code_and_message(
    rpc_server: CustomDestinationServer,
) -> None:
    with pytest.raises(TerminalError) as info:
        _connector(rpc_server.url, token=None).list_objects()
    assert "-32001" in str(info.value) and "unauthorized: bad API key" in str(info.value)


def test_objects_fields_and_operations(rpc_server: CustomDestinationServer) -> None:
    conn = _connector(rpc_server.url)
    contact = conn.get_object("contact")
    assert contact.supported_operations == ("upsert", "insert", "update", "mirror")
    assert [f.full_name for f in contact.fields if f.identifier] == ["id", "email"]
    assert contact.field("amount").type == "float"  # type: ignore[union-attr]
    assert conn.get_object("event").allow_custom_fields is True
    with pytest.raises(ObjectNotFound):
        conn.get_object("nope")


def test_per_record_results_are_matched_by_identifier(rpc_server: CustomDestinationServer) -> None:
    rpc_server.state.records["contact"].clear()
    conn = _connector(rpc_server.url)
    batch = pa.RecordBatch.from_pylist(
        [
            {"id": 1, "name": "ok one"},
            {"id": 2, "name": "reject me"},
            {"id": 3, "name": "ok three"},
            {"id": 4, "name": "rejected too"},
            {"id": 5, "name": "ok"},
        ]
    )
    writer = conn.open_writer(_ctx(("id", "name")))
    result = writer.write(batch, "upsert")
    writer.close()
    assert [(r.index, r.reason) for r in result.rejected] == [
        (1, "name 'reject me' is not allowed"),
        (3, "name 'rejected too' is not allowed"),
    ]
    assert sorted(rpc_server.state.records["contact"]) == [1, 3, 5]


def test_sync_batch_shape_follows_the_protocol(rpc_server: CustomDestinationServer) -> None:
    start = len(rpc_server.state.calls)
    conn = _connector(
        rpc_server.url,
        custom_headers={
            "X-Client": {"value": "abc"},
            "X-Secret": {"value": "s3", "is_secret": True},
        },
    )
    batch = pa.RecordBatch.from_pylist(
        [{"id": 10, "name": "a"}, {"id": 11, "name": "b"}, {"id": 12, "name": "c"}]
    )
    writer = conn.open_writer(_ctx(("id", "name")))
    assert writer.write(batch, "upsert").rejected == []
    assert writer.write(batch.slice(0, 1), "delete").rejected == []
    writer.close()
    calls = rpc_server.state.calls[start:]
    batches = [c for c in calls if c["method"] == "sync_batch"]
    # get_sync_speed says 2 records per batch: 3 records are two calls, plus one delete
    assert sorted(len(c["params"]["records"]) for c in batches) == [1, 1, 2]
    plan = batches[0]["params"]["sync_plan"]
    assert plan["object"] == {"object_api_name": "contact", "label": "Contacts"}
    assert (plan["sync_id"], plan["sync_run_id"]) == (7, 99)
    assert set(plan["schema"]) == {"id", "name"}
    assert plan["schema"]["id"]["active_identifier"] is True
    assert plan["schema"]["name"]["field"]["type"] == "string"
    delete = [c for c in batches if c["params"]["sync_plan"]["operation"] == "delete"][0]
    assert delete["params"]["records"] == [{"id": 10}]
    headers = {k.lower(): v for k, v in batches[0]["headers"].items()}
    assert headers["x-client"] == "abc" and headers["x-secret"] == "s3"
    assert headers["authorization"] == f"Bearer {KEY}"
    assert 10 not in rpc_server.state.records["contact"]


def test_values_are_encoded_by_field_type() -> None:
    assert encode(decimal.Decimal("1234.1234"), "decimal") == "1234.1234"
    assert encode(dt.datetime(2021, 3, 29, 16, 32, 23, tzinfo=dt.UTC), "date_time") == (
        "2021-03-29T16:32:23Z"
    )
    assert encode(dt.date(2021, 3, 29), "date") == "2021-03-29"
    assert encode(4242.0, "integer") == 4242
    assert encode([1.5, None], "float") == [1.5, None]


def test_connection_details_hide_secrets() -> None:
    config = CustomApiConfig.model_validate(
        {
            "webhook_url": "https://x.example/rpc?census_authentication=XoBc",
            "custom_headers": {
                "x-id": {"value": "123"},
                "x-secret": {"value": "s", "is_secret": True},
            },
            "auth_token": "tok",
        }
    )
    details = config.connection_details()
    assert "XoBc" not in json.dumps(details) and "tok" not in json.dumps(details)
    assert details["custom_headers"]["x-secret"] == {"value": None, "is_secret": True}
    assert details["custom_headers"]["x-id"] == {"value": "123", "is_secret": False}
    assert mask_query("http://h/p?a=1&b=2") == "http://h/p?a=%2A%2A%2A&b=%2A%2A%2A"


def test_http_errors_are_typed() -> None:
    def app(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            int(request.url.params["code"]), headers={"Retry-After": "3"}, text="nope"
        )

    # a real socket is not needed to check the mapping of statuses: MockTransport
    conn = _connector("http://127.0.0.1:1/rpc?code=503")
    conn.rpc.http = httpx.Client(transport=httpx.MockTransport(app))
    with pytest.raises(TransientError) as info:
        conn.list_objects()
    assert info.value.retry_after == 3
    conn = _connector("http://127.0.0.1:1/rpc?code=401")
    conn.rpc.http = httpx.Client(transport=httpx.MockTransport(app))
    with pytest.raises(TerminalError):
        conn.list_objects()


def test_registered_type_renders_header_templates(rpc_server: CustomDestinationServer) -> None:
    cls = define_custom_type(
        service_name="acme_crm",
        label="Acme CRM",
        configuration_definition={
            "api_token": {
                "id": "api_token",
                "label": "API Token",
                "type": "string",
                "secret": True,
                "required": True,
            },
            "region": {"id": "region", "type": "string", "default": "us"},
        },
        url=rpc_server.url,
        headers={"Authorization": "Bearer {{ api_token }}", "X-Region": "{{ region }}"},
    )
    conn = cls(cls.config_model.model_validate({"api_token": KEY}))
    assert conn.test_connection()[0].status == "success"
    assert rpc_server.state.calls[-1]["headers"]["X-Region"] == "us"
    assert cls.config_model.model_validate({"api_token": KEY}).connection_details() == {
        "region": "us"
    }


def test_rate_limit_header_sets_the_connection_limit() -> None:
    def app(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(
            200,
            headers={"X-RateLimit-Limit": "7"},
            json={"jsonrpc": "2.0", "id": body["id"], "result": {"objects": []}},
        )

    conn = _connector("http://127.0.0.1:1/rpc")
    conn.rpc.http = httpx.Client(transport=httpx.MockTransport(app))
    assert conn.rpc.requests.per_second == 50_000
    assert conn.list_objects() == []
    assert conn.rpc.requests.per_second == 7
