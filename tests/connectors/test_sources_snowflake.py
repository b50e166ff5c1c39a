"""Snowflake against fakesnow's server mode: the real connector logs in and queries over
HTTP on loopback, so connect kwargs, Arrow result chunks and error payloads take the
same path as against Snowflake. fakesnow (patch mode) replaces ``connect`` itself and
is used only for the connector-without-Arrow fallback."""

from __future__ import annotations

import importlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
import snowflake.connector
from pydantic import ValidationError

from reflow.connectors.base import TableRef, run_steps
from reflow.connectors.errors import InvalidQuery, TransientError
from reflow.connectors.registry import source_types
from reflow.connectors.sources.snowflake import SnowflakeConfig, SnowflakeSource
from reflow.connectors.testing import SEED_ROWS, SourceConformance
from tests.conftest import unique_name

PEM_HEADER = "-----BEGIN PRIVATE KEY-----"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    import uvicorn
    from fakesnow.instance import FakeSnow

    server_module = importlib.import_module("fakesnow.server")
    shared = server_module.shared_fs
    # Unknown databases must stay unknown, as in Snowflake (fakesnow creates them).
    server_module.shared_fs = FakeSnow(create_database_on_connect=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(server_module.app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while thread.is_alive() and not server.started:
        time.sleep(0.05)
    assert server.started, "fakesnow server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join()
    sock.close()
    server_module.shared_fs = shared


def _credentials(endpoint: str, database: str, **overrides: Any) -> dict[str, Any]:
    creds = {
        "account": "xy12345.us-east-1",
        "user": "REFLOW",
        "password": "s3cret-pw",
        "warehouse": "COMPUTE_WH",
        "database": database,
        "endpoint_url": endpoint,
        "login_timeout_seconds": 5,
    }
    return creds | overrides


def _source(endpoint: str, database: str, **overrides: Any) -> SnowflakeSource:
    config = SnowflakeConfig.model_validate(_credentials(endpoint, database, **overrides))
    return SnowflakeSource(config)


def _admin(endpoint: str) -> Any:
    port = int(endpoint.rsplit(":", 1)[1])
    return snowflake.connector.connect(
        account="admin",
        user="admin",
        password="x",
        host="127.0.0.1",
        port=port,
        protocol="http",
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    )


@pytest.fixture(scope="module")
def seeded(endpoint: str) -> TableRef:
    database = unique_name("REFLOW").upper()
    with _admin(endpoint) as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"USE DATABASE {database}")
        cur.execute('CREATE SCHEMA "S1"')
        cur.execute(
            'CREATE TABLE "S1"."Seed Table"'
            " (id INT PRIMARY KEY, name VARCHAR, amount FLOAT, active BOOLEAN)"
        )
        cur.executemany(
            'INSERT INTO "S1"."Seed Table" VALUES (%(id)s, %(name)s, %(amount)s, %(active)s)',
            SEED_ROWS,
        )
    # In-memory databases vanish with the server at the end of the module.
    return TableRef(database, "S1", "Seed Table")


class TestSnowflakeSource(SourceConformance):
    @pytest.fixture
    def source(self, endpoint: str, seeded: TableRef) -> SnowflakeSource:
        return _source(endpoint, seeded.catalog)

    @pytest.fixture
    def bad_source(self, endpoint: str, seeded: TableRef) -> SnowflakeSource:
        return _source(endpoint, "NO_SUCH_DATABASE_X")

    @pytest.fixture
    def seeded_table(self, seeded: TableRef) -> TableRef:
        return seeded


def test_registered() -> None:
    assert source_types()["snowflake"] is SnowflakeSource
    assert SnowflakeSource.label == "Snowflake"


def test_four_steps_and_the_missing_database_is_named(endpoint: str, seeded: TableRef) -> None:
    good = _source(endpoint, seeded.catalog).test_connection()
    assert [s.step for s in good] == [
        "Verify connectivity",
        "Verify warehouse",
        "Verify database",
        "Verify read access",
    ]
    bad = _source(endpoint, "NO_SUCH_DATABASE_X").test_connection()
    assert bad[-1].step == "Verify database"
    assert (bad[-1].message or "").startswith("database 'NO_SUCH_DATABASE_X': ")


def test_unreachable_endpoint_fails_connectivity(seeded: TableRef) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    steps = _source(dead, seeded.catalog, login_timeout_seconds=2).test_connection()
    assert [(s.step, s.status) for s in steps] == [("Verify connectivity", "failed")]
    with pytest.raises(TransientError):
        _source(dead, seeded.catalog, login_timeout_seconds=2).list_tables()


def test_primary_key_is_unique(endpoint: str, seeded: TableRef) -> None:
    columns = _source(endpoint, seeded.catalog).list_columns(seeded)
    assert [c.name for c in columns if c.unique] == ["ID"]


def test_arrow_types_from_result_metadata(endpoint: str, seeded: TableRef) -> None:
    source = _source(endpoint, seeded.catalog)
    (batch,) = list(source.read(source.table_query(seeded)))
    assert batch.schema == pa.schema(
        [
            ("ID", pa.int64()),
            ("NAME", pa.string()),
            ("AMOUNT", pa.float64()),
            ("ACTIVE", pa.bool_()),
        ]
    )


def test_query_columns_names_snowflake_types(endpoint: str, seeded: TableRef) -> None:
    source = _source(endpoint, seeded.catalog)
    cols = source.query_columns('SELECT id, name FROM "S1"."Seed Table"')
    assert [(c.name, c.type) for c in cols] == [("ID", "FIXED"), ("NAME", "TEXT")]


def test_read_of_a_bad_query_is_invalid_query(endpoint: str, seeded: TableRef) -> None:
    with pytest.raises(InvalidQuery):
        list(_source(endpoint, seeded.catalog).read("SELECT * FROM S1.no_such_table"))


def test_keypair_login(endpoint: str, seeded: TableRef) -> None:
    # fakesnow accepts any login, so this proves the key is parsed and handed to the
    # connector's JWT authenticator, not that Snowflake would accept it.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"phrase"),
    )
    source = _source(
        endpoint,
        seeded.catalog,
        password=None,
        use_keypair="true",
        private_key_pkcs8=pem.decode(),
        private_key_passphrase="phrase",
    )
    assert all(s.status == "success" for s in source.test_connection())
    wrong = _source(
        endpoint,
        seeded.catalog,
        use_keypair=True,
        private_key=pem.decode(),
        private_key_passphrase="not-it",
    )
    steps = wrong.test_connection()
    assert steps[-1].status == "failed" and "private key" in (steps[-1].message or "")


def test_fetchmany_fallback_without_arrow(seeded: TableRef) -> None:
    import fakesnow

    with fakesnow.patch():
        with snowflake.connector.connect(database="FALLBACK_DB", schema="S") as conn:
            conn.cursor().execute("CREATE TABLE t AS SELECT 1 AS n UNION ALL SELECT 2")
        source = SnowflakeSource(
            SnowflakeConfig.model_validate(_credentials("", "FALLBACK_DB", endpoint_url=None))
        )
        batches = list(source.read("SELECT n FROM FALLBACK_DB.S.t ORDER BY n", batch_size=1))
    assert [b.to_pylist() for b in batches] == [[{"N": 1}], [{"N": 2}]]


def test_redshift_keys_fail_naming_what_snowflake_needs() -> None:
    redshift = {
        "hostname": "x.redshift.amazonaws.com",
        "port": "5439",
        "user": "u",
        "password": "redshift_password",
        "database": "demo",
    }
    # The service validates credentials inside the test's first step.
    steps = run_steps([("Verify connectivity", lambda: SnowflakeConfig.model_validate(redshift))])
    assert steps[0].status == "failed"
    message = steps[0].message or ""
    assert "missing: account, warehouse" in message
    assert "A Snowflake connection needs account, user, warehouse and database" in message
    assert "redshift_password" not in message
    # What a service shows per error: one clean sentence, no pydantic per-field noise.
    with pytest.raises(ValidationError) as info:
        SnowflakeConfig.model_validate(redshift)
    (error,) = info.value.errors()
    assert error["msg"].endswith("missing: account, warehouse")


def test_keypair_needs_the_key_not_a_password() -> None:
    creds = {"account": "a", "user": "u", "warehouse": "w", "database": "d", "use_keypair": True}
    with pytest.raises(ValidationError, match=r"missing: private_key \["):
        SnowflakeConfig.model_validate(creds)
    assert SnowflakeConfig.model_validate(creds | {"private_key": PEM_HEADER}).use_keypair


def test_schema_marks_secrets_and_details_hide_them() -> None:
    schema = SnowflakeConfig.model_json_schema()

    def secret(prop: dict[str, Any]) -> bool:
        return any(
            b.get("writeOnly") is True and b.get("format") == "password"
            for b in [prop, *prop.get("anyOf", [])]
        )

    secrets = {k for k, v in schema["properties"].items() if secret(v)}
    assert secrets == {"password", "private_key", "private_key_passphrase"}
    assert "schema" in schema["properties"]
    config = SnowflakeConfig.model_validate(
        {
            "account": "xy12345.us-east-1",
            "user": "DEV",
            "warehouse": "TEST",
            "database": "PRODUCTION",
            "password": "pw-secret",
            "schema": "PUBLIC",
            "port": "5439",  # Census examples send it for Snowflake too: ignored
        }
    )
    details = config.connection_details()
    assert not {"password", "private_key", "private_key_passphrase"} & set(details)
    assert "pw-secret" not in repr(details)
    assert details["schema"] == "PUBLIC" and details["use_keypair"] is False
    assert config.identifying_value() == "xy12345.us-east-1"
    name = f"{SnowflakeSource.label} - {config.identifying_value()}"
    assert name == "Snowflake - xy12345.us-east-1"
