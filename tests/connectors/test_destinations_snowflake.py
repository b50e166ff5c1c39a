"""Snowflake destination against fakesnow's server mode: the real
snowflake-connector-python talks HTTP to an emulator on loopback. What fakesnow
cannot emulate is listed in the connector's module docstring."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import fakesnow
import pyarrow as pa
import pytest
import snowflake.connector
from snowflake.connector.platform_detection import ENV_VAR_DISABLE_PLATFORM_DETECTION

from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.snowflake import SnowflakeDestination
from reflow.connectors.errors import BatchRejected, ObjectNotFound
from reflow.connectors.testing import DestinationConformance, seed_batch
from tests.conftest import unique_name

# Bound at import: fakesnow.server() itself imports the fakesnow.server submodule, which
# rebinds the package attribute to the module, so a second lookup finds no function.
fakesnow_server = fakesnow.server

CREATE = (
    "CREATE TABLE {t} (id NUMBER(38,0) PRIMARY KEY, name VARCHAR, amount FLOAT, active BOOLEAN)"
)


@pytest.fixture(scope="module")
def fake_snowflake() -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        # The connector would otherwise probe cloud metadata endpoints on login.
        mp.setenv(ENV_VAR_DISABLE_PLATFORM_DETECTION, "true")
        with fakesnow_server() as kwargs:
            yield kwargs


@pytest.fixture
def credentials(fake_snowflake: dict[str, Any]) -> dict[str, Any]:
    """Census-shaped credentials for a fresh database and schema of the emulator."""
    return {
        "account": "xy12345.us-east-1",
        "user": fake_snowflake["user"],
        "password": fake_snowflake["password"],
        "warehouse": "COMPUTE_WH",
        "database": unique_name("DB").upper(),
        "schema": unique_name("S").upper(),
        "role": "SYSADMIN",
        "host": fake_snowflake["host"],
        "port": fake_snowflake["port"],
        "protocol": fake_snowflake["protocol"],
        "login_timeout_seconds": 5,
    }


@pytest.fixture
def sql(
    fake_snowflake: dict[str, Any], credentials: dict[str, Any]
) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    conn = snowflake.connector.connect(
        **fake_snowflake, database=credentials["database"], schema=credentials["schema"]
    )

    def run(statement: str) -> list[dict[str, Any]]:
        cur = conn.cursor(snowflake.connector.DictCursor)
        cur.execute(statement)
        return list(cur.fetchall()) if cur.description else []

    yield run
    conn.close()


def _destination(credentials: dict[str, Any]) -> SnowflakeDestination:
    return SnowflakeDestination(SnowflakeDestination.config_model.model_validate(credentials))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestSnowflakeDestination(DestinationConformance):
    @pytest.fixture
    def destination(self, credentials: dict[str, Any]) -> SnowflakeDestination:
        return _destination(credentials)

    @pytest.fixture
    def bad_destination(self, credentials: dict[str, Any]) -> SnowflakeDestination:
        # fakesnow accepts any password, so "cannot log in" is a host that refuses.
        return _destination(dict(credentials, port=_closed_port(), login_timeout_seconds=2))

    @pytest.fixture
    def object_name(self, sql: Callable[..., Any], credentials: dict[str, Any]) -> str:
        sql(CREATE.format(t="people"))
        return f"{credentials['schema']}.PEOPLE"

    @pytest.fixture
    def read_back(
        self, sql: Callable[..., list[dict[str, Any]]], object_name: str
    ) -> Callable[[], list[dict[str, Any]]]:
        return lambda: sql(f"SELECT * FROM {object_name}")


def _write(dest: SnowflakeDestination, table: str, batch: pa.RecordBatch, action: str) -> None:
    ctx = WriteContext(1, 1, table, "id", tuple(batch.schema.names))
    writer = dest.open_writer(ctx)
    try:
        writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()


@pytest.mark.parametrize("action", ["upsert", "update", "append"])
def test_value_the_column_cannot_take_rejects_the_batch(
    sql: Callable[..., list[dict[str, Any]]], credentials: dict[str, Any], action: str
) -> None:
    # fakesnow ignores VARCHAR lengths, so the refused value is text for a NUMBER.
    sql("CREATE TABLE stock (id NUMBER(38,0) PRIMARY KEY, qty NUMBER(38,0))")
    sql("INSERT INTO stock VALUES (1, 5)")
    batch = pa.RecordBatch.from_pylist(
        [{"id": 1, "qty": "7"}, {"id": 2, "qty": "not a number"}],
        schema=pa.schema([("id", pa.int64()), ("qty", pa.string())]),
    )
    with pytest.raises(BatchRejected, match="not a number"):
        _write(_destination(credentials), "stock", batch, action)
    assert sql("SELECT * FROM stock") == [{"ID": 1, "QTY": 5}]


def test_names_match_case_insensitively_and_keys_are_identifiers(
    sql: Callable[..., list[dict[str, Any]]], credentials: dict[str, Any]
) -> None:
    sql(CREATE.format(t="people"))
    dest = _destination(credentials)
    obj = dest.get_object("people")
    assert obj.full_name == f"{credentials['schema']}.PEOPLE"
    assert [f.full_name for f in obj.fields if f.identifier] == ["ID"]
    _write(dest, f"{credentials['schema'].lower()}.people", seed_batch(), "upsert")
    assert sql("SELECT COUNT(*) AS N FROM people") == [{"N": 6}]
    with pytest.raises(ObjectNotFound):
        dest.get_object("OTHER_SCHEMA_X.PEOPLE")


def test_connection_details_keep_census_keys(credentials: dict[str, Any]) -> None:
    details = _destination(credentials).config.connection_details()
    assert details["schema"] == credentials["schema"]
    assert "password" not in details
