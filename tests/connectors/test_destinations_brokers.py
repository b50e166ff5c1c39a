"""RabbitMQ, NATS JetStream and Redis Streams destinations against the real brokers."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest

from reflow.connectors.base import DestinationConnector, WriteContext, WriteResult
from reflow.connectors.destinations.nats import NatsDestination
from reflow.connectors.destinations.rabbitmq import RabbitMQDestination
from reflow.connectors.destinations.redis_streams import RedisStreamsDestination
from reflow.connectors.errors import ObjectNotFound, TerminalError
from reflow.connectors.registry import destination_types
from reflow.connectors.testing import SEED_ROWS, DestinationConformance, seed_batch
from tests.conftest import require_service, unique_name

RABBIT = {"hostname": "127.0.0.1", "port": 5672, "user": "guest", "password": "guest"}
NATS_URL = "nats://127.0.0.1:4222"
REDIS = {"hostname": "127.0.0.1", "port": 6379}


def write(
    destination: DestinationConnector, object_name: str, batch: pa.RecordBatch, action: str
) -> WriteResult:
    ctx = WriteContext(1, 1, object_name, "id", tuple(batch.schema.names))
    writer = destination.open_writer(ctx)
    try:
        return writer.write(batch, action)  # type: ignore[arg-type]
    finally:
        writer.close()


def test_brokers_are_registered() -> None:
    types = destination_types()
    assert types["rabbitmq"] is RabbitMQDestination
    assert types["nats"] is NatsDestination
    assert types["redis"] is RedisStreamsDestination


# --- RabbitMQ ------------------------------------------------------------------------


@pytest.fixture
def amqp() -> Iterator[Any]:
    import pika

    require_service("RabbitMQ", 5672)
    params = pika.ConnectionParameters(
        "127.0.0.1", 5672, "/", pika.PlainCredentials("guest", "guest")
    )
    conn = pika.BlockingConnection(params)
    yield conn.channel()
    conn.close()


@pytest.fixture
def rabbit_queue(amqp: Any) -> Iterator[str]:
    name = unique_name("reflow_q")
    amqp.queue_declare(name)
    yield name
    amqp.queue_delete(name)


def drain(channel: Any, queue: str) -> list[tuple[Any, dict[str, Any]]]:
    """(properties, decoded body) of every message in the queue, consumed."""
    out = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((properties, json.loads(body)))


def rabbit(**overrides: Any) -> RabbitMQDestination:
    return RabbitMQDestination(RabbitMQDestination.config_model.model_validate(RABBIT | overrides))


class TestRabbitMQDestination(DestinationConformance):
    merges = False

    @pytest.fixture
    def destination(self) -> RabbitMQDestination:
        require_service("RabbitMQ", 5672)
        return rabbit()

    @pytest.fixture
    def bad_destination(self) -> RabbitMQDestination:
        return rabbit(password="not-the-password")

    @pytest.fixture
    def object_name(self, rabbit_queue: str) -> str:
        return f"queue:{rabbit_queue}"

    @pytest.fixture
    def read_back(self, amqp: Any, rabbit_queue: str) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [body for _, body in drain(amqp, rabbit_queue)]

    def test_key_travels_in_message_id_and_header(
        self, destination: RabbitMQDestination, amqp: Any, rabbit_queue: str
    ) -> None:
        write(destination, f"queue:{rabbit_queue}", seed_batch(SEED_ROWS[:2]), "upsert")
        messages = drain(amqp, rabbit_queue)
        assert [p.message_id for p, _ in messages] == ["1", "2"]
        assert [p.headers["reflow-key"] for p, _ in messages] == ["1", "2"]
        assert {p.headers["reflow-operation"] for p, _ in messages} == {"upsert"}
        assert {p.content_type for p, _ in messages} == {"application/json"}

    def test_nulls_of_keep_on_null_fields_are_left_out(
        self, destination: RabbitMQDestination, amqp: Any, rabbit_queue: str
    ) -> None:
        batch = seed_batch(SEED_ROWS[3:5])  # id 4: amount and active null; id 5: name null
        ctx = WriteContext(1, 1, f"queue:{rabbit_queue}", "id", tuple(batch.schema.names),
                           keep_on_null=frozenset({"name", "amount"}))
        writer = destination.open_writer(ctx)
        try:
            writer.write(batch, "upsert")
        finally:
            writer.close()
        assert [body for _, body in drain(amqp, rabbit_queue)] == [
            {"id": 4, "name": "", "active": None},  # sync_null_values stays true for active
            {"id": 5, "amount": 1e6, "active": False},
        ]

    def test_bad_password_fails_with_the_brokers_message(
        self, bad_destination: RabbitMQDestination
    ) -> None:
        steps = bad_destination.test_connection()
        assert steps[0].status == "failed"
        assert "ACCESS_REFUSED" in (steps[0].message or "")

    def test_unroutable_message_is_rejected_not_accepted(
        self, destination: RabbitMQDestination, amqp: Any
    ) -> None:
        exchange, queue = unique_name("reflow_x"), unique_name("reflow_q")
        amqp.exchange_declare(exchange, "direct")
        amqp.queue_declare(queue)
        amqp.queue_bind(queue, exchange, routing_key="bound")
        try:
            result = write(destination, f"exchange:{exchange}/nowhere", seed_batch(), "append")
            routed = write(destination, f"exchange:{exchange}/bound", seed_batch(), "append")
            delivered = drain(amqp, queue)
        finally:
            amqp.queue_delete(queue)
            amqp.exchange_delete(exchange)
        assert [r.index for r in result.rejected] == list(range(len(SEED_ROWS)))
        assert all("unroutable" in r.reason for r in result.rejected)
        assert routed.rejected == []
        assert [body["id"] for _, body in delivered] == [r["id"] for r in SEED_ROWS]

    def test_missing_queue_and_exchange_are_object_not_found(
        self, destination: RabbitMQDestination
    ) -> None:
        with pytest.raises(ObjectNotFound, match="NOT_FOUND"):
            destination.get_object(f"queue:{unique_name('missing')}")
        with pytest.raises(ObjectNotFound, match="NOT_FOUND"):
            write(destination, f"exchange:{unique_name('missing')}/k", seed_batch(), "append")


# --- NATS JetStream ------------------------------------------------------------------


def nats_call(work: Callable[[Any], Any]) -> Any:
    """Run ``await work(js)`` against the local server."""
    import nats

    async def main() -> Any:
        nc = await nats.connect(NATS_URL)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


@pytest.fixture
def nats_stream() -> Iterator[tuple[str, str]]:
    """(stream, subject): a fresh stream capturing one fresh subject."""
    require_service("NATS", 4222)
    stream = unique_name("reflow_test")
    subject = f"reflow.test.{stream}"
    # A long duplicate window, so the de-duplication checks never depend on timing.
    nats_call(lambda js: js.add_stream(name=stream, subjects=[subject], duplicate_window=600))
    yield stream, subject
    nats_call(lambda js: js.delete_stream(stream))


def nats_messages(stream: str, subject: str) -> list[Any]:
    """Every message of the stream, through a pull consumer."""

    async def fetch(js: Any) -> list[Any]:
        count = (await js.stream_info(stream)).state.messages
        if count == 0:
            return []
        sub = await js.pull_subscribe(subject, stream=stream)
        return await sub.fetch(count, timeout=10)

    return nats_call(fetch)


@pytest.fixture(scope="module")
def nats_auth_port() -> Iterator[int]:
    """A private nats-server that requires a password (the shared one has no auth)."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [binary, "-a", "127.0.0.1", "-p", str(port), "--user", "reflow", "--pass", "s3cret"]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # readiness poll, not a timing assertion
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "the private nats-server exited"
                subprocess.run(["sleep", "0.1"], check=True)
        yield port
    finally:
        server.terminate()
        server.wait()


def nats_destination(**overrides: Any) -> NatsDestination:
    credentials = {"servers": NATS_URL} | overrides
    return NatsDestination(NatsDestination.config_model.model_validate(credentials))


class TestNatsDestination(DestinationConformance):
    merges = False

    @pytest.fixture
    def destination(self) -> NatsDestination:
        require_service("NATS", 4222)
        return nats_destination()

    @pytest.fixture
    def bad_destination(self, nats_auth_port: int) -> NatsDestination:
        return nats_destination(
            servers=f"nats://127.0.0.1:{nats_auth_port}", user="reflow", password="wrong"
        )

    @pytest.fixture
    def object_name(self, nats_stream: tuple[str, str]) -> str:
        return nats_stream[1]

    @pytest.fixture
    def read_back(self, nats_stream: tuple[str, str]) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [json.loads(m.data) for m in nats_messages(*nats_stream)]

    def test_key_travels_in_headers(
        self, destination: NatsDestination, nats_stream: tuple[str, str]
    ) -> None:
        write(destination, nats_stream[1], seed_batch(SEED_ROWS[:2]), "upsert")
        messages = nats_messages(*nats_stream)
        assert [m.headers["reflow-key"] for m in messages] == ["1", "2"]
        assert [m.headers["Nats-Msg-Id"].split(":")[0] for m in messages] == ["1", "2"]
        assert {m.headers["reflow-operation"] for m in messages} == {"upsert"}

    def test_lists_the_subjects_of_streams(
        self, destination: NatsDestination, nats_stream: tuple[str, str]
    ) -> None:
        assert nats_stream[1] in {o.full_name for o in destination.list_objects()}

    def test_resend_is_deduplicated_but_a_change_is_not(
        self, destination: NatsDestination, nats_stream: tuple[str, str]
    ) -> None:
        subject = nats_stream[1]
        write(destination, subject, seed_batch(), "upsert")
        write(destination, subject, seed_batch(), "upsert")  # a retried batch
        changed = [dict(SEED_ROWS[0], name="changed")]
        write(destination, subject, seed_batch(changed), "upsert")
        bodies = [json.loads(m.data) for m in nats_messages(*nats_stream)]
        assert len(bodies) == len(SEED_ROWS) + 1
        assert bodies[-1] == changed[0]

    def test_refused_publish_is_a_rejected_record(self, destination: NatsDestination) -> None:
        from nats.js.api import DiscardPolicy

        stream = unique_name("reflow_full")
        subject = f"reflow.test.{stream}"
        nats_call(
            lambda js: js.add_stream(
                name=stream, subjects=[subject], max_msgs=3, discard=DiscardPolicy.NEW
            )
        )
        try:
            result = write(destination, subject, seed_batch(), "append")
        finally:
            nats_call(lambda js: js.delete_stream(stream))
        assert [r.index for r in result.rejected] == [3, 4, 5]
        assert all("maximum messages" in r.reason for r in result.rejected)

    def test_subject_without_stream_is_a_typed_error(self, destination: NatsDestination) -> None:
        subject = f"reflow.nostream.{unique_name('s')}"
        with pytest.raises(ObjectNotFound, match="no response from stream"):
            write(destination, subject, seed_batch(), "append")
        with pytest.raises(ObjectNotFound):
            destination.get_object(subject)

    def test_bad_password_fails_with_the_servers_message(
        self, bad_destination: NatsDestination
    ) -> None:
        steps = bad_destination.test_connection()
        assert steps[0].status == "failed"
        assert "Authorization Violation" in (steps[0].message or "")

    def test_right_password_is_sent(self, nats_auth_port: int) -> None:
        good = nats_destination(
            servers=f"nats://127.0.0.1:{nats_auth_port}", user="reflow", password="s3cret"
        )
        steps = good.test_connection()
        # The private server runs without JetStream: logging in works, JetStream not.
        assert [s.status for s in steps] == ["success", "failed"]
        assert "JetStream is not available" in (steps[1].message or "")


# --- Redis Streams -------------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[Any]:
    import redis

    require_service("Redis", 6379)
    client = redis.Redis(**{"host": REDIS["hostname"], "port": REDIS["port"]})
    yield client
    client.close()


@pytest.fixture
def redis_stream(redis_client: Any) -> Iterator[str]:
    key = unique_name("reflow_stream")
    redis_client.xgroup_create(key, "consumers", id="$", mkstream=True)
    yield key
    redis_client.delete(key)


def redis_entries(client: Any, key: str) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(key)]


def redis_destination(**overrides: Any) -> RedisStreamsDestination:
    config = RedisStreamsDestination.config_model.model_validate(REDIS | overrides)
    return RedisStreamsDestination(config)


class TestRedisStreamsDestination(DestinationConformance):
    merges = False

    @pytest.fixture
    def destination(self) -> RedisStreamsDestination:
        require_service("Redis", 6379)
        return redis_destination()

    @pytest.fixture
    def bad_destination(self) -> RedisStreamsDestination:
        return redis_destination(username="no_such_user_x", password="wrong")

    @pytest.fixture
    def object_name(self, redis_stream: str) -> str:
        return redis_stream

    @pytest.fixture
    def read_back(self, redis_client: Any, redis_stream: str) -> Callable[[], list[dict]]:
        return lambda: [json.loads(e["data"]) for e in redis_entries(redis_client, redis_stream)]

    def test_key_and_operation_travel_as_fields(
        self, destination: RedisStreamsDestination, redis_client: Any, redis_stream: str
    ) -> None:
        write(destination, redis_stream, seed_batch(SEED_ROWS[:2]), "upsert")
        write(destination, redis_stream, seed_batch(SEED_ROWS[:1]), "delete")
        entries = redis_entries(redis_client, redis_stream)
        assert [(e["key"], e["operation"]) for e in entries] == [
            ("1", "upsert"),
            ("2", "upsert"),
            ("1", "delete"),
        ]

    def test_lists_streams_only(
        self, destination: RedisStreamsDestination, redis_client: Any, redis_stream: str
    ) -> None:
        other = unique_name("reflow_string")
        redis_client.set(other, "x")
        try:
            names = {o.full_name for o in destination.list_objects()}
        finally:
            redis_client.delete(other)
        assert redis_stream in names
        assert other not in names

    def test_bad_credentials_fail_with_the_servers_message(
        self, bad_destination: RedisStreamsDestination
    ) -> None:
        steps = bad_destination.test_connection()
        assert steps[0].status == "failed"
        assert "invalid username-password pair" in (steps[0].message or "")

    def test_missing_stream_is_not_created(
        self, destination: RedisStreamsDestination, redis_client: Any
    ) -> None:
        key = unique_name("reflow_missing")
        try:
            with pytest.raises(ObjectNotFound):
                write(destination, key, seed_batch(), "append")
            assert redis_client.exists(key) == 0
        finally:
            redis_client.delete(key)

    def test_key_of_another_type_is_refused(
        self, destination: RedisStreamsDestination, redis_client: Any
    ) -> None:
        key = unique_name("reflow_string")
        redis_client.set(key, "x")
        try:
            with pytest.raises(ObjectNotFound, match="string"):
                destination.get_object(key)
            with pytest.raises(TerminalError, match="WRONGTYPE"):
                write(destination, key, seed_batch(), "append")
        finally:
            redis_client.delete(key)

    def test_maxlen_trims_the_stream(self, redis_client: Any, redis_stream: str) -> None:
        destination = redis_destination(maxlen=10)
        rows = [{"id": i, "name": "n", "amount": 1.0, "active": True} for i in range(1, 1001)]
        write(destination, redis_stream, seed_batch(rows), "append")
        # Approximate trimming keeps whole radix-tree nodes: at least 10, far below 1000.
        assert 10 <= redis_client.xlen(redis_stream) < 1000

    def test_records_are_json_with_iso_datetimes(
        self, destination: RedisStreamsDestination, redis_client: Any, redis_stream: str
    ) -> None:
        at = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
        batch = pa.RecordBatch.from_pylist(
            [
                {"id": 1, "at": at, "day": at.date(), "price": decimal.Decimal("1.10"), "x": 1.0},
                {"id": None, "at": at, "day": at.date(), "price": None, "x": 1.0},
                {"id": 3, "at": None, "day": None, "price": None, "x": float("nan")},
            ],
            schema=pa.schema(
                [
                    ("id", pa.int64()),
                    ("at", pa.timestamp("us", tz="UTC")),
                    ("day", pa.date32()),
                    ("price", pa.decimal128(5, 2)),
                    ("x", pa.float64()),
                ]
            ),
        )
        result = write(destination, redis_stream, batch, "append")
        assert [r.index for r in result.rejected] == [1, 2]
        assert "null" in result.rejected[0].reason
        [entry] = redis_entries(redis_client, redis_stream)
        assert json.loads(entry["data"]) == {
            "id": 1,
            "at": "2024-05-06T07:08:09+00:00",
            "day": "2024-05-06",
            "price": "1.10",
            "x": 1.0,
        }
