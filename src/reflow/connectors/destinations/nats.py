"""NATS JetStream destination: one JSON message per record, each acknowledged.

The object is a subject that a JetStream stream captures (``list_objects`` lists the
literal subjects of the account's streams; a subject matched by a wildcard stream
can be typed in). Each message is published with ``js.publish`` and its ``PubAck``
awaited: a publish that the stream refuses is a ``RejectedRecord`` with JetStream's
reason; a subject no stream captures fails the run (``ObjectNotFound``); an
unreachable server raises ``TransientError``.

Headers: ``reflow-key`` (the sync key value), ``reflow-operation`` (``append``,
``upsert`` or ``delete``) and ``Nats-Msg-Id`` (see ``msg_id``). ``append`` and
``upsert`` both publish the records they are given; with the engine's diff, upsert
therefore means "an event per new or changed row". ``delete`` publishes tombstones.

nats-py is asyncio-only: every call (a test, a listing, a batch) connects, works and
closes on its own event loop in a worker thread; see ``session``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

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

T = TypeVar("T")

#: Seconds to wait for a connection, and for each PubAck.
_TIMEOUT = 10.0


class NatsConfig(ConnectorConfig):
    servers: str = Field(
        title="Servers",
        description="Server URL, or several separated by commas (nats://127.0.0.1:4222).",
    )
    user: str | None = Field(None, title="User", description="User, if the server needs one.")
    password: SecretStr | None = Field(None, title="Password", description="Password of the user.")
    token: SecretStr | None = Field(
        None, title="Token", description="Authentication token, instead of user and password."
    )

    def server_list(self) -> list[str]:
        return [s.strip() for s in self.servers.split(",") if s.strip()]

    def identifying_value(self) -> str | None:
        return self.servers


class NatsDestination(DestinationConnector):
    service_name = "nats"
    label = "NATS JetStream"
    documentation_slug = "nats"
    config_model = NatsConfig
    capabilities = DestinationCapabilities(
        operations=BROKER_OPERATIONS, batch_size=5_000, sync_null_values=True
    )
    config: NatsConfig

    def test_connection(self) -> list[TestStep]:
        async def nothing(nc: Any) -> None:
            return None

        async def jetstream(nc: Any) -> None:
            await nc.jetstream(timeout=_TIMEOUT).account_info()

        return run_steps(
            [
                ("Verify connectivity", lambda: session(self.config, nothing)),
                ("Verify JetStream", lambda: session(self.config, jetstream)),
            ]
        )

    def list_objects(self) -> list[DestinationObject]:
        async def subjects(nc: Any) -> list[str]:
            js, found, offset = nc.jetstream(timeout=_TIMEOUT), set[str](), 0
            # STREAM.LIST answers a page at a time.
            while page := await js.streams_info(offset=offset):
                found.update(s for info in page for s in (info.config.subjects or []))
                offset += len(page)
            return sorted(s for s in found if not _is_wildcard(s))

        return [broker_object(subject) for subject in session(self.config, subjects)]

    def get_object(self, full_name: str) -> DestinationObject:
        import nats.js.errors

        if not full_name or _is_wildcard(full_name):
            raise ObjectNotFound(f"{full_name!r} is not a subject one can publish to")

        async def find(nc: Any) -> None:
            js = nc.jetstream(timeout=_TIMEOUT)
            try:
                await js.find_stream_name_by_subject(full_name)
            except nats.js.errors.NotFoundError as exc:
                reason = f"no JetStream stream captures subject {full_name!r}"
                raise ObjectNotFound(reason) from exc

        session(self.config, find)
        return broker_object(full_name)

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return NatsWriter(self.config, ctx)


class NatsWriter(BatchWriter):
    """Connects per batch: a batch is thousands of publishes, so one connect is cheap,
    and no connection or loop outlives the call that needs it."""

    def __init__(self, config: NatsConfig, ctx: WriteContext) -> None:
        self.config = config
        self.ctx = ctx

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        messages, rejected = encode_messages(batch, self.ctx.key_field,
                                              self.ctx.keep_on_null)

        async def publish_all(nc: Any) -> None:
            js = nc.jetstream(timeout=_TIMEOUT)
            # One at a time, so that events of one key reach the stream in order.
            for message in messages:
                reason = await self._publish(js, message, action)
                if reason is not None:
                    rejected.append(RejectedRecord(message.index, reason))

        session(self.config, publish_all)
        return WriteResult(rejected=sorted(rejected, key=lambda r: r.index))

    async def _publish(self, js: Any, message: Message, action: Action) -> str | None:
        """Publish one message; the reason it was refused, or ``None`` once acked."""
        import nats.errors
        import nats.js.errors

        subject = self.ctx.object_name
        headers = {
            "Nats-Msg-Id": msg_id(message),
            "reflow-key": message.key,
            "reflow-operation": action,
        }
        try:
            await js.publish(subject, message.body, headers=headers)
        except nats.js.errors.NoStreamResponseError as exc:
            reason = f"no JetStream stream captures subject {subject!r}: {exc}"
            raise ObjectNotFound(reason) from exc
        except nats.js.errors.APIError as exc:
            return str(exc)  # the stream refused this message (limits, expectations)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            # An unanswered publish is retried as a batch rather than rejected: the
            # broker is unwell, and the msg id makes the re-send of stored ones a no-op.
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        return None


def msg_id(message: Message) -> str:
    """The JetStream de-duplication id of a message.

    JetStream drops a message whose ``Nats-Msg-Id`` it saw within the stream's
    duplicate window (two minutes by default). The key alone would drop a genuine
    second change of the same row inside that window; key plus a hash of the payload
    drops only exact re-sends, which is what a batch retried after a transient
    failure produces.
    """
    return f"{message.key}:{hashlib.sha256(message.body).hexdigest()[:32]}"


async def connect(config: NatsConfig) -> Any:
    """A connection that fails fast, with the server's own reason, instead of
    retrying for minutes as nats-py does by default."""
    import nats

    for server in config.server_list():
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        check_server(parts.hostname or "", parts.port, default_port=4222)
    errors: list[Exception] = []

    async def record(exc: Exception) -> None:
        errors.append(exc)

    try:
        return await nats.connect(
            servers=config.server_list(),
            user=config.user,
            password=config.password.get_secret_value() if config.password else None,
            token=config.token.get_secret_value() if config.token else None,
            connect_timeout=_TIMEOUT,
            allow_reconnect=False,
            # nats-py retries the initial connect up to this many times per server.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            error_cb=record,
        )
    except Exception as exc:
        cause = errors[-1] if errors else exc
        message = str(cause).strip() or type(cause).__name__
        if "Authorization" in message or "Authentication" in message:
            raise TerminalError(message) from exc
        raise TransientError(message) from exc


def session(config: NatsConfig, work: Callable[[Any], Awaitable[T]]) -> T:
    """Connect, run ``work(connection)`` and close, on a fresh event loop in a worker
    thread (so it works the same whether or not the caller already runs a loop)."""

    async def main() -> T:
        nc = await connect(config)
        try:
            return await work(nc)
        finally:
            await nc.close()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reflow-nats") as pool:
        future = pool.submit(asyncio.run, main())
        with _typed_errors():
            return future.result()


@contextmanager
def _typed_errors() -> Iterator[None]:
    """Map what nats-py raises outside a publish to the connector's typed errors."""
    import nats.errors
    import nats.js.errors

    try:
        yield
    except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError) as exc:
        # Nobody answers the $JS.API subjects (nats-py reports that as a bare 503):
        # the server or account has no JetStream.
        reason = "JetStream is not available to this account: no response from $JS.API"
        raise TerminalError(reason) from exc
    except nats.js.errors.APIError as exc:
        raise TerminalError(str(exc)) from exc
    except (TimeoutError, nats.errors.Error, OSError) as exc:
        raise TransientError(str(exc).strip() or type(exc).__name__) from exc


def _is_wildcard(subject: str) -> bool:
    return any(token in ("*", ">") for token in subject.split("."))
