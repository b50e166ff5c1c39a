"""RabbitMQ destination: one persistent JSON message per record, with publisher confirms.

Object names say where messages go, and nothing is ever declared:

* ``queue:<name>`` publishes through the default exchange with the queue name as
  routing key, so the message lands in that queue.
* ``exchange:<name>/<routing key>`` publishes to an exchange; everything after the
  first ``/`` is the routing key (``exchange:<name>`` alone means an empty key,
  as fanout exchanges use).

The queue or exchange must exist (``get_object`` checks it with a passive declare).
AMQP 0-9-1 cannot list queues or exchanges, so ``list_objects`` returns nothing and
any name following the scheme can be typed in.

Every message is published ``mandatory`` on a channel in confirm mode and waits for
its confirm: a message the broker could not route to any queue, or nacked, is a
``RejectedRecord``; a broker that cannot be reached raises ``TransientError``.
Delivery is at-least-once: a batch resent after a transient failure publishes again
the messages confirmed before it.

Operations: ``append`` and ``upsert`` both publish the records they are given; with
the engine's diff, upsert therefore means "an event per new or changed row".
``delete`` publishes the records as tombstones (header ``reflow-operation: delete``).
The sync key goes in the ``reflow-key`` header and in ``message_id`` (unless longer
than the 255 bytes AMQP allows there).

The record encoding at the bottom of this module is shared with the other broker
destinations (NATS, Redis Streams), so that a consumer sees the same JSON from all.
"""

from __future__ import annotations

from dataclasses import dataclass
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

_SCHEME_HELP = "use 'queue:<name>' or 'exchange:<name>/<routing key>'"


class RabbitMQConfig(ConnectorConfig):
    hostname: str = Field(title="Hostname", description="Host name or IP of the broker.")
    port: int = Field(5672, title="Port", description="AMQP port (usually 5671 with TLS).")
    virtual_host: str = Field("/", title="Virtual host", description="Virtual host to use.")
    user: str = Field(title="User", description="User to log in as.")
    password: SecretStr = Field(title="Password", description="Password of the user.")
    tls: bool = Field(False, title="Use TLS", description="Connect with TLS (AMQPS).")


@dataclass(frozen=True)
class Target:
    """Where a message is published: an exchange and a routing key."""

    exchange: str
    routing_key: str
    #: The queue the object names, checked passively; ``None`` for an exchange.
    queue: str | None = None


def parse_object(full_name: str) -> Target:
    kind, sep, rest = full_name.partition(":")
    if sep and kind == "queue" and rest:
        return Target("", rest, queue=rest)
    if sep and kind == "exchange" and rest:
        exchange, _, routing_key = rest.partition("/")
        if exchange:
            return Target(exchange, routing_key)
    raise ObjectNotFound(f"{full_name!r} is not a RabbitMQ object name: {_SCHEME_HELP}")


class RabbitMQDestination(DestinationConnector):
    service_name = "rabbitmq"
    label = "RabbitMQ"
    documentation_slug = "rabbitmq"
    config_model = RabbitMQConfig
    # Each publish waits for its confirm, so big batches only delay the first result.
    capabilities = DestinationCapabilities(
        operations=BROKER_OPERATIONS, batch_size=5_000, sync_null_values=True
    )
    config: RabbitMQConfig

    def test_connection(self) -> list[TestStep]:
        state: dict[str, Any] = {}

        def connectivity() -> None:
            state["conn"] = connect(self.config)

        def confirms() -> None:
            state["conn"].channel().confirm_delivery()

        try:
            return run_steps(
                [("Verify connectivity", connectivity), ("Verify publisher confirms", confirms)]
            )
        finally:
            if "conn" in state:
                _close_quietly(state["conn"])

    def list_objects(self) -> list[DestinationObject]:
        # AMQP has no listing call (only the optional management plugin does).
        return []

    def get_object(self, full_name: str) -> DestinationObject:
        import pika.exceptions

        target = parse_object(full_name)
        conn = connect(self.config)
        try:
            channel = conn.channel()
            if target.queue is not None:
                channel.queue_declare(target.queue, passive=True)
            else:
                channel.exchange_declare(target.exchange, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise ObjectNotFound(exc.reply_text) from exc
            raise TerminalError(exc.reply_text) from exc
        finally:
            _close_quietly(conn)
        return broker_object(full_name)

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return RabbitMQWriter(self.config, ctx)


class RabbitMQWriter(BatchWriter):
    def __init__(self, config: RabbitMQConfig, ctx: WriteContext) -> None:
        self.config = config
        self.ctx = ctx
        self.target = parse_object(ctx.object_name)
        self.conn: Any = None
        self.channel: Any = None

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        messages, rejected = encode_messages(batch, self.ctx.key_field,
                                              self.ctx.keep_on_null)
        channel = self._channel()
        for message in messages:
            reason = self._publish(channel, message, action)
            if reason is not None:
                rejected.append(RejectedRecord(message.index, reason))
        return WriteResult(rejected=sorted(rejected, key=lambda r: r.index))

    def _channel(self) -> Any:
        # Reconnect when the previous batch lost the connection (for instance to a
        # missed heartbeat while the engine was reading the source).
        if self.channel is None or self.channel.is_closed:
            if self.conn is not None:
                _close_quietly(self.conn)
            import pika.exceptions

            self.conn = connect(self.config)
            try:
                self.channel = self.conn.channel()
                self.channel.confirm_delivery()
            except pika.exceptions.AMQPError as exc:
                raise TransientError(describe(exc)) from exc
        return self.channel

    def _publish(self, channel: Any, message: Message, action: Action) -> str | None:
        """Publish one message; the reason it was refused, or ``None`` once confirmed."""
        import pika
        import pika.exceptions as pe

        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            # message_id is an AMQP short string (255 bytes); the header has no limit.
            message_id=message.key if len(message.key.encode()) <= 255 else None,
            app_id="reflow",
            headers={"reflow-key": message.key, "reflow-operation": action},
        )
        try:
            channel.basic_publish(
                self.target.exchange,
                self.target.routing_key,
                message.body,
                properties,
                mandatory=True,
            )
        except pe.UnroutableError:
            return f"unroutable: no queue is bound for routing key {self.target.routing_key!r}"
        except pe.NackError:
            return "the broker did not confirm the message (nack)"
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                raise ObjectNotFound(exc.reply_text) from exc
            raise TerminalError(exc.reply_text) from exc
        except pe.AMQPError as exc:
            raise TransientError(describe(exc)) from exc
        return None

    def close(self) -> None:
        if self.conn is not None:
            _close_quietly(self.conn)
            self.conn = self.channel = None


def connect(config: RabbitMQConfig) -> Any:
    """A blocking connection; typed errors carry the broker's own message."""
    import pika
    import pika.exceptions as pe

    check_server(config.hostname, config.port)
    options = None
    if config.tls:
        import ssl

        options = pika.SSLOptions(ssl.create_default_context(), config.hostname)
    params = pika.ConnectionParameters(
        host=config.hostname,
        port=config.port,
        virtual_host=config.virtual_host,
        credentials=pika.PlainCredentials(config.user, config.password.get_secret_value()),
        ssl_options=options,
        connection_attempts=1,
        socket_timeout=10,
        blocked_connection_timeout=60,
    )
    try:
        return pika.BlockingConnection(params)
    except (pe.ProbableAuthenticationError, pe.ProbableAccessDeniedError) as exc:
        raise TerminalError(describe(exc)) from exc
    except pe.AMQPError as exc:
        raise TransientError(describe(exc)) from exc


def describe(exc: Exception) -> str:
    # Some pika errors carry their reason only in args (str() is empty).
    return str(exc).strip() or repr(exc)


def _close_quietly(conn: Any) -> None:
    import pika.exceptions

    try:
        if conn.is_open:
            conn.close()
    except pika.exceptions.AMQPError:
        pass  # the connection is being dropped anyway
