"""Every destination kind through the API (issue 4, "Done when"): one PostgreSQL model
is synced (upsert) into each kind and what arrived is read back from the real system;
then two source rows change, the sync runs again, and only those two are sent.

Database kinds are read as tables; for them "only two were sent" is shown by a row the
test edited in the destination after the first run, which the second run must leave
alone. File kinds write one delta file per run, HTTP kinds one request per record (or
per batch), broker kinds one message per record: there the second run must add exactly
two files' rows / requests' records / messages, the changed rows.

Pinned to one state store (PostgreSQL, a dedicated ``reflow serve`` for this module):
what is under test is each destination kind, which does not depend on where Reflow
keeps its own state, and the API suites already run against both stores."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pymysql
import pytest

from tests.api.conftest import Server, start_server, stop_server
from tests.api.syncing import col, pg_source, run
from tests.conftest import (
    create_pg_database,
    drop_pg_database,
    pg_credentials,
    require_service,
    unique_name,
)
from tests.support.emulators import (
    SNOWFLAKE_ENV,
    fakesnow_connect,
    fakesnow_endpoint,
    moto_s3_endpoint,
)
from tests.support.loopback_http import Receiver, loopback_receiver

FIELDS = ("id", "email", "name", "score")
ROWS = [(i, f"user{i}@example.com", f"User {i}", i * 10) for i in range(1, 9)]
CHANGED = {3: ("user3@example.com", "Changed Three", 333), 6: ("new6@example.com", "User 6", 60)}
TAMPERED_ID = 1  # edited in database destinations after the first run
SIGNING_SECRET = "whsec-reflow-test"
API_KEY = "k-123-secret"


def as_records(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(FIELDS, row, strict=True)) for row in rows]


def changed_records() -> list[dict[str, Any]]:
    return as_records([(key, *values) for key, values in sorted(CHANGED.items())])


@dataclass
class Target:
    """One destination kind: how to connect, what object to write, how to read back.

    ``read`` returns, for a ``table`` kind, the rows now in the table (id -> the other
    fields); for a ``files`` kind the records of each file, files in run order; for a
    ``log`` kind every record delivered so far, in delivery order.
    """

    type: str
    credentials: dict[str, Any]
    object: str
    read: Callable[[], Any]
    mode: str = "table"  # or "files", "log"
    tamper: Callable[[], None] | None = None
    upper: bool = False  # Snowflake: fields are upper-case names
    on_sync_created: list[Callable[[int], None]] = field(default_factory=list)  # gets sync_id
    #: The sync's ``advanced_configuration`` (per-sync destination settings).
    options: dict[str, Any] = field(default_factory=dict)

    def field(self, name: str) -> str:
        return name.upper() if self.upper else name


def _table_state(rows: list[tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    return {int(row[0]): tuple(row[1:]) for row in rows}


def _tamper(sql: Callable[[str], Any], table: str) -> None:
    """Edit one row in the destination, which a run that resends it would undo."""
    sql(f"UPDATE {table} SET name = 'tampered' WHERE id = {TAMPERED_ID}")


# --- the reflow server and the emulators -----------------------------------------------


@pytest.fixture(scope="module")
def reflow() -> Iterator[Server]:
    require_service("PostgreSQL", 5432)
    home = Path(tempfile.mkdtemp(prefix="reflow-destination-kinds-"))
    state_db = create_pg_database("reflow_state")
    env = {
        **SNOWFLAKE_ENV,
        "REFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{state_db}",
    }
    server = start_server("postgres", home, env)
    yield server
    stop_server(server)
    shutil.rmtree(home, ignore_errors=True)
    drop_pg_database(state_db)


@pytest.fixture
def api(reflow: Server) -> Iterator[httpx.Client]:
    with reflow.client() as client:
        yield client


@pytest.fixture(scope="module")
def snowflake_endpoint() -> Iterator[str]:
    with fakesnow_endpoint() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with loopback_receiver() as state:
        yield state


# --- database kinds --------------------------------------------------------------------


def _postgres(request: pytest.FixtureRequest) -> Target:
    conn: psycopg.Connection = request.getfixturevalue("pg_conn")
    schema: str = request.getfixturevalue("pg_schema")
    database: str = request.getfixturevalue("pg_database")
    conn.execute(
        f'CREATE TABLE "{schema}".crm (id bigint PRIMARY KEY, email text, name text, score bigint)'
    )

    def read() -> dict[int, tuple[Any, ...]]:
        return _table_state(conn.execute(f'SELECT * FROM "{schema}".crm').fetchall())

    return Target(
        "postgres",
        pg_credentials(database),
        f"{schema}.crm",
        read,
        tamper=lambda: _tamper(conn.execute, f'"{schema}".crm'),
    )


def _mysql(request: pytest.FixtureRequest) -> Target:
    require_service("MariaDB", 3306)
    database = unique_name("reflow_dst")
    conn = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", autocommit=True, charset="utf8mb4"
    )
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cur.execute(
            f"CREATE TABLE `{database}`.crm (id BIGINT PRIMARY KEY,"
            " email VARCHAR(100), name VARCHAR(100), score BIGINT)"
        )

    def sql(statement: str) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall())

    def drop() -> None:
        sql(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()

    request.addfinalizer(drop)
    creds = {
        "hostname": "127.0.0.1",
        "port": 3306,
        "user": "root",
        "password": "",
        "database": database,
    }
    return Target(
        "mysql",
        creds,
        f"{database}.crm",
        lambda: _table_state(sql(f"SELECT * FROM `{database}`.crm")),
        tamper=lambda: _tamper(sql, f"`{database}`.crm"),
    )


def _sqlite(request: pytest.FixtureRequest) -> Target:
    path = request.getfixturevalue("tmp_path") / "crm.sqlite"

    def sql(statement: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path)
        try:
            with conn:
                return conn.execute(statement).fetchall()
        finally:
            conn.close()

    sql("CREATE TABLE crm (id INTEGER PRIMARY KEY, email TEXT, name TEXT, score INTEGER)")
    return Target(
        "sqlite",
        {"path": str(path)},
        "crm",
        lambda: _table_state(sql("SELECT * FROM crm")),
        tamper=lambda: _tamper(sql, "crm"),
    )


def _duckdb(request: pytest.FixtureRequest) -> Target:
    import duckdb

    path = str(request.getfixturevalue("tmp_path") / "crm.duckdb")

    def sql(statement: str) -> list[tuple[Any, ...]]:
        conn = duckdb.connect(path)  # closed at once: one process may write the file
        try:
            conn.execute(statement)
            return conn.fetchall() if statement.startswith("SELECT") else []
        finally:
            conn.close()

    sql("CREATE TABLE crm (id BIGINT PRIMARY KEY, email VARCHAR, name VARCHAR, score BIGINT)")
    return Target(
        "duckdb",
        {"path": path},
        "main.crm",
        lambda: _table_state(sql("SELECT * FROM crm")),
        tamper=lambda: _tamper(sql, "crm"),
    )


def _snowflake(request: pytest.FixtureRequest) -> Target:
    endpoint: str = request.getfixturevalue("snowflake_endpoint")
    database, schema = unique_name("DST").upper(), "CRM_S"
    conn = fakesnow_connect(endpoint)
    request.addfinalizer(conn.close)

    def sql(statement: str) -> list[tuple[Any, ...]]:
        cur = conn.cursor()
        cur.execute(statement)
        return list(cur.fetchall()) if cur.description else []

    sql(f"CREATE DATABASE {database}")
    sql(f"CREATE SCHEMA {database}.{schema}")
    sql(
        f"CREATE TABLE {database}.{schema}.CRM"
        " (ID NUMBER(38,0) PRIMARY KEY, EMAIL VARCHAR, NAME VARCHAR, SCORE NUMBER(38,0))"
    )
    port = int(endpoint.rsplit(":", 1)[1])
    creds = {
        "account": "xy12345.us-east-1",
        "user": "REFLOW",
        "password": "s3cret-pw",
        "warehouse": "COMPUTE_WH",
        "database": database,
        "schema": schema,
        "host": "127.0.0.1",
        "port": port,
        "protocol": "http",
        "login_timeout_seconds": 5,
    }
    table = f"{database}.{schema}.CRM"
    return Target(
        "snowflake",
        creds,
        f"{schema}.CRM",
        lambda: _table_state(sql(f"SELECT ID, EMAIL, NAME, SCORE FROM {table}")),
        tamper=lambda: _tamper(sql, table),
        upper=True,
    )


# --- file kinds --------------------------------------------------------------------------


def parse_file(name: str, data: bytes) -> list[dict[str, Any]]:
    if name.endswith(".csv"):
        return pacsv.read_csv(io.BytesIO(data)).to_pylist()
    if name.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data)).to_pylist()
    return [json.loads(line) for line in data.decode().splitlines() if line]


def _run_ordered(files: dict[str, bytes]) -> list[list[dict[str, Any]]]:
    """Records of each file, files in the order of their run ids (``<run_id>.<ext>``)."""
    names = sorted(files, key=lambda n: int(Path(n).name.split(".")[0]))
    return [parse_file(name, files[name]) for name in names]


def _local_files(
    suffix: str, options: dict[str, Any] | None = None
) -> Callable[[pytest.FixtureRequest], Target]:
    def make(request: pytest.FixtureRequest) -> Target:
        root: Path = request.getfixturevalue("tmp_path") / "exports"
        root.mkdir()

        def read() -> list[list[dict[str, Any]]]:
            return _run_ordered(
                {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
            )

        return Target(
            "local_files",
            {"directory": str(root)},
            "crm/{{ run_id }}." + suffix,
            read,
            mode="files",
            options=options or {},
        )

    return make


def _s3(request: pytest.FixtureRequest) -> Target:
    import boto3

    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket = unique_name("reflow").replace("_", "-")
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=bucket)

    def objects() -> dict[str, bytes]:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {
            o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed
        }

    def drop() -> None:
        for key in objects():
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)

    request.addfinalizer(drop)
    creds = {
        "bucket": bucket,
        "region": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "endpoint_url": endpoint,
    }
    return Target(
        "s3", creds, "exports/{{ run_id }}.jsonl", lambda: _run_ordered(objects()), mode="files"
    )


# --- HTTP kinds --------------------------------------------------------------------------


def _http_request(request: pytest.FixtureRequest) -> Target:
    receiver: Receiver = request.getfixturevalue("receiver")
    creds = {
        "base_url": receiver.url,
        "headers": [{"name": "X-Api-Key", "value": API_KEY, "is_secret": True}],
    }
    options = {
        "http_endpoint": "/contacts/{{ record['id'] }}",
        "http_method": "PUT",
        "records_per_request": "one",
    }

    def read() -> list[dict[str, Any]]:
        sent = [r for r in receiver.with_body() if r.method == "PUT"]
        for r in sent:
            body = r.json()
            assert r.path == f"/contacts/{body['id']}", r
            assert r.headers.get("X-Api-Key") == API_KEY, r.headers
        return [r.json() for r in sent]

    return Target("http_request", creds, "request", read, mode="log", options=options)


def _webhook(request: pytest.FixtureRequest) -> Target:
    receiver: Receiver = request.getfixturevalue("receiver")
    creds = {
        "url": receiver.url + "/hook",
        "use_bulk_upload": True,
        "batch_size": 100,
        "signing_secret": SIGNING_SECRET,
        "connection_name": "CRM hook",
    }
    state: dict[str, int] = {}

    def read() -> list[dict[str, Any]]:
        records = []
        for r in receiver.with_body():
            assert (r.method, r.path) == ("POST", "/hook"), r
            expected = base64.b64encode(
                hmac.new(SIGNING_SECRET.encode(), r.body, hashlib.sha256).digest()
            ).decode()
            assert r.headers.get("X-Signature") == expected, "the signature does not verify"
            envelope = r.json()
            assert envelope["api_version"] == 1
            assert envelope["operation"] == "changed"
            assert envelope["connection_name"] == "CRM hook"
            assert envelope["sync_configuration_id"] == state["sync_id"]
            for record in envelope["data"]:
                assert record.pop("unique_id") == record["id"], record
                records.append(record)
        return records

    target = Target("webhook", creds, "webhook", read, mode="log",
                    options={"send_full_record_on_deletes": False})
    target.on_sync_created.append(lambda sync_id: state.update(sync_id=sync_id))
    return target


# --- broker kinds ------------------------------------------------------------------------


def _rabbitmq(request: pytest.FixtureRequest) -> Target:
    import pika

    require_service("RabbitMQ", 5672)
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", 5672, "/", pika.PlainCredentials("guest", "guest"))
    )
    channel = conn.channel()
    queue = unique_name("reflow_q")
    channel.queue_declare(queue)
    consumed: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return list(consumed)
            record = json.loads(body)
            assert properties.headers["reflow-key"] == str(record["id"])
            consumed.append(record)

    def drop() -> None:
        channel.queue_delete(queue)
        conn.close()

    request.addfinalizer(drop)
    creds = {"hostname": "127.0.0.1", "port": 5672, "user": "guest", "password": "guest"}
    return Target("rabbitmq", creds, f"queue:{queue}", read, mode="log")


def _nats_call(work: Callable[[Any], Any]) -> Any:
    import nats

    async def main() -> Any:
        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


def _nats(request: pytest.FixtureRequest) -> Target:
    require_service("NATS", 4222)
    stream = unique_name("reflow_kinds")
    subject = f"reflow.kinds.{stream}"
    _nats_call(lambda js: js.add_stream(name=stream, subjects=[subject]))
    request.addfinalizer(lambda: _nats_call(lambda js: js.delete_stream(stream)))

    async def fetch(js: Any) -> list[dict[str, Any]]:
        count = (await js.stream_info(stream)).state.messages
        if count == 0:
            return []
        sub = await js.pull_subscribe(subject, stream=stream)
        messages = await sub.fetch(count, timeout=10)
        for m in messages:
            assert m.headers["reflow-key"] == str(json.loads(m.data)["id"])
        return [json.loads(m.data) for m in messages]

    return Target(
        "nats", {"servers": "nats://127.0.0.1:4222"}, subject, lambda: _nats_call(fetch), mode="log"
    )


def _redis(request: pytest.FixtureRequest) -> Target:
    import redis

    require_service("Redis", 6379)
    client: Any = redis.Redis(host="127.0.0.1", port=6379)
    key = unique_name("reflow_kinds")
    client.xgroup_create(key, "consumers", id="$", mkstream=True)

    def read() -> list[dict[str, Any]]:
        out = []
        for _, fields in client.xrange(key):
            entry = {k.decode(): v.decode() for k, v in fields.items()}
            assert entry["operation"] == "upsert", entry
            record = json.loads(entry["data"])
            assert entry["key"] == str(record["id"])
            out.append(record)
        return out

    def drop() -> None:
        client.delete(key)
        client.close()

    request.addfinalizer(drop)
    return Target("redis", {"hostname": "127.0.0.1", "port": 6379}, key, read, mode="log")


KINDS: dict[str, Callable[[pytest.FixtureRequest], Target]] = {
    "postgres": _postgres,
    "mysql": _mysql,
    "sqlite": _sqlite,
    "duckdb": _duckdb,
    "snowflake": _snowflake,
    "local_files-csv": _local_files("csv"),
    "local_files-jsonl": _local_files("jsonl"),
    "local_files-parquet": _local_files("parquet"),
    # No known extension: the sync's file_format decides (NDJSON, read back line by line).
    "local_files-txt-ndjson": _local_files("txt", {"file_format": "ndjson"}),
    "s3": _s3,
    "http_request": _http_request,
    "webhook": _webhook,
    "rabbitmq": _rabbitmq,
    "nats": _nats,
    "redis": _redis,
}


@pytest.fixture(params=list(KINDS))
def target(request: pytest.FixtureRequest) -> Target:
    return KINDS[request.param](request)


# --- the test ----------------------------------------------------------------------------


def _source_model(
    api: httpx.Client, conn: psycopg.Connection, schema: str, database: str
) -> tuple[int, int]:
    conn.execute(
        f'CREATE TABLE "{schema}".contacts (id int PRIMARY KEY, email text, name text, score int)'
    )
    with conn.cursor() as cur:
        cur.executemany(f'INSERT INTO "{schema}".contacts VALUES (%s, %s, %s, %s)', ROWS)
    source_id = pg_source(api, database, name=unique_name("wh"))
    model = api.post(
        f"/sources/{source_id}/models",
        json={"name": unique_name("contacts"), "query": f'SELECT * FROM "{schema}".contacts'},
    )
    assert model.status_code == 201, model.text
    return source_id, model.json()["data"]["id"]


def _destination(api: httpx.Client, target: Target) -> int:
    response = api.post(
        "/destinations",
        json={
            "service_connection": {
                "type": target.type,
                "name": unique_name(target.type),
                "credentials": target.credentials,
            }
        },
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["last_test_succeeded"] is True, data["last_test_results"]
    return data["id"]


def _sync(api: httpx.Client, source_id: int, model_id: int, dest_id: int, target: Target) -> int:
    mappings = [
        col("id", target.field("id"), key=True),
        *(col(name, target.field(name)) for name in FIELDS[1:]),
    ]
    response = api.post(
        "/syncs",
        json={
            "operation": "upsert",
            "source_attributes": {
                "connection_id": source_id,
                "object": {"type": "model", "id": model_id},
            },
            "destination_attributes": {"connection_id": dest_id, "object": target.object},
            "mappings": mappings,
            "advanced_configuration": target.options,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["sync_id"]


def _by_id(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r["id"])


def test_upsert_into_destination_kind(
    api: httpx.Client,
    target: Target,
    pg_conn: psycopg.Connection,
    pg_schema: str,
    pg_database: str,
) -> None:
    source_id, model_id = _source_model(api, pg_conn, pg_schema, pg_database)
    dest_id = _destination(api, target)
    sync_id = _sync(api, source_id, model_id, dest_id, target)
    for notify in target.on_sync_created:
        notify(sync_id)

    first = run(api, sync_id)
    assert (first["records_processed"], first["records_failed"]) == (len(ROWS), 0), first
    after_first = target.read()
    if target.mode == "table":
        assert after_first == _table_state(ROWS)
        assert target.tamper is not None
        target.tamper()
    elif target.mode == "files":
        assert [_by_id(f) for f in after_first] == [as_records(ROWS)]
    else:
        assert _by_id(after_first) == as_records(ROWS)

    for key, (email, name, score) in CHANGED.items():
        pg_conn.execute(
            f'UPDATE "{pg_schema}".contacts SET email = %s, name = %s, score = %s WHERE id = %s',
            (email, name, score, key),
        )
    second = run(api, sync_id)
    assert (second["records_processed"], second["records_failed"]) == (2, 0), second
    after_second = target.read()
    if target.mode == "table":
        expected = _table_state(ROWS) | CHANGED
        expected[TAMPERED_ID] = (expected[TAMPERED_ID][0], "tampered", expected[TAMPERED_ID][2])
        assert after_second == expected
    elif target.mode == "files":
        assert after_second[0] == after_first[0]
        assert [_by_id(f) for f in after_second[1:]] == [changed_records()]
    else:
        assert after_second[: len(after_first)] == after_first
        assert _by_id(after_second[len(after_first) :]) == changed_records()

    assert api.delete(f"/syncs/{sync_id}").status_code == 200
    assert api.delete(f"/destinations/{dest_id}").status_code == 200
    assert api.delete(f"/sources/{source_id}").status_code == 200
