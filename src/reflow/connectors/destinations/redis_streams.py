"""Redis Streams destination: one ``XADD`` entry per record.

The object is a stream key. Entries carry three fields: ``key`` (the sync key value),
``operation`` (``append``, ``upsert`` or ``delete``) and ``data`` (the record as a
JSON object, datetimes in ISO-8601).

The stream must already exist (consumers usually create it with
``XGROUP CREATE <key> <group> $ MKSTREAM``): entries are added with ``NOMKSTREAM``,
so a typo or a deleted stream fails the run instead of silently creating a stream
nobody reads. ``maxlen`` in the config trims each stream approximately (``MAXLEN ~``).

``append`` and ``upsert`` both add the records they are given; with the engine's diff,
upsert therefore means "an entry per new or changed row". ``delete`` adds tombstone
entries (``operation`` = ``delete``). Delivery is at-least-once: a batch resent after
a transient failure adds its entries again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from pydantic import Field, SecretStr

from reflow.connectors.base import (
    Action,
    BatchWriter,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationConnector,
    DestinationObject,
    RejectedRecord,
    TestStep,
    WriteContext,
    WriteResult,
    run_steps,
)
from reflow.connectors.destinations._messages import (
    BROKER_OPERATIONS,
    Message,
    broker_object,
    encode_messages,
)
from reflow.connectors.errors import ObjectNotFound, TerminalError, TransientError
from reflow.connectors.outbound import check_server

#: Entries sent per pipeline round trip: bounds the client's buffer on big batches.
_PIPELINE_SIZE = 1_000
#: XADD NOMKSTREAM arrived in Redis 6.2.
_MIN_VERSION = (6, 2)


class RedisStreamsConfig(ConnectorConfig):
    hostname: str = Field(title="Hostname", description="Host name or IP of the Redis server.")
    port: int = Field(6379, title="Port", description="Port of the Redis server.")
    db: int = Field(0, title="Database", description="Logical database number.")
    username: str | None = Field(
        None, title="Username", description="ACL user (Redis 6+); empty for the default user."
    )
    password: SecretStr | None = Field(
        None, title="Password", description="Password, if the server requires one."
    )
    tls: bool = Field(False, title="Use TLS", description="Connect with TLS.")
    maxlen: int | None = Field(
        None,
        title="Approximate maximum length",
        description="Trim each stream to about this many entries (XADD MAXLEN ~); "
        "empty keeps every entry.",
        gt=0,
    )


class RedisStreamsDestination(DestinationConnector):
    service_name = "redis"
    label = "Redis Streams"
    documentation_slug = "redis-streams"
    config_model = RedisStreamsConfig
    capabilities = DestinationCapabilities(
        operations=BROKER_OPERATIONS, batch_size=10_000, sync_null_values=True
    )
    config: RedisStreamsConfig

    def test_connection(self) -> list[TestStep]:
        client = connect(self.config)

        def connectivity() -> None:
            client.ping()

        def version() -> None:
            text = str(client.info("server").get("redis_version", "0"))
            found = tuple(int(part) for part in text.split(".")[:2])
            if found < _MIN_VERSION:
                raise RuntimeError(f"Redis {text} is too old: streams need 6.2 or later")

        try:
            return run_steps(
                [("Verify connectivity", connectivity), ("Verify stream support", version)]
            )
        finally:
            client.close()

    def list_objects(self) -> list[DestinationObject]:
        with _errors(), connect(self.config) as client:
            keys = sorted(client.scan_iter(_type="stream", count=1_000))
        return [broker_object(key.decode()) for key in keys]

    def get_object(self, full_name: str) -> DestinationObject:
        with _errors(), connect(self.config) as client:
            kind = client.type(full_name).decode()
        if kind == "none":
            raise ObjectNotFound(f"no stream {full_name!r} in database {self.config.db}")
        if kind != "stream":
            raise ObjectNotFound(f"key {full_name!r} holds a {kind}, not a stream")
        return broker_object(full_name)

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return RedisStreamsWriter(self.config, ctx)


class RedisStreamsWriter(BatchWriter):
    def __init__(self, config: RedisStreamsConfig, ctx: WriteContext) -> None:
        self.config = config
        self.ctx = ctx
        self.client = connect(config)

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        messages, rejected = encode_messages(batch, self.ctx.key_field,
                                              self.ctx.keep_on_null)
        for start in range(0, len(messages), _PIPELINE_SIZE):
            chunk = messages[start : start + _PIPELINE_SIZE]
            rejected.extend(self._add(chunk, action))
        return WriteResult(rejected=sorted(rejected, key=lambda r: r.index))

    def _add(self, chunk: list[Message], action: Action) -> list[RejectedRecord]:
        import redis

        stream = self.ctx.object_name
        pipe = self.client.pipeline(transaction=False)
        for message in chunk:
            fields = {"key": message.key, "operation": action, "data": message.body}
            pipe.xadd(stream, fields, maxlen=self.config.maxlen, approximate=True, nomkstream=True)
        with _errors():
            results = pipe.execute(raise_on_error=False)
        rejected = []
        for message, result in zip(chunk, results, strict=True):
            if result is None:  # NOMKSTREAM answers nil when the stream is missing
                raise ObjectNotFound(f"stream {stream!r} does not exist")
            if isinstance(result, redis.ResponseError):
                if str(result).startswith("WRONGTYPE"):
                    raise TerminalError(f"{stream!r}: {result}")
                rejected.append(RejectedRecord(message.index, str(result)))
        return rejected

    def close(self) -> None:
        self.client.close()


def connect(config: RedisStreamsConfig) -> Any:
    """A client; it connects on its first command."""
    import redis

    password = config.password.get_secret_value() if config.password else None
    check_server(config.hostname, config.port)
    return redis.Redis(
        host=config.hostname,
        port=config.port,
        db=config.db,
        username=config.username,
        password=password,
        ssl=config.tls,
        socket_connect_timeout=10,
        socket_timeout=30,
    )


@contextmanager
def _errors() -> Iterator[None]:
    """Map redis-py failures to the connector's typed errors."""
    import redis.exceptions as re

    try:
        yield
    except (re.AuthenticationError, re.AuthorizationError) as exc:
        raise TerminalError(str(exc)) from exc
    except (re.ConnectionError, re.TimeoutError) as exc:
        raise TransientError(str(exc)) from exc
    except re.ResponseError as exc:
        # NOPERM and friends: retrying with the same credentials cannot help.
        raise TerminalError(str(exc)) from exc
