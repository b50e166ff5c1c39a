"""Topics of HTTP Request sources and the messages posted to them.

A topic's schema is inferred from its sample message. Messages arrive at
``POST /ingest/{source_id}/{topic}`` with ``Authorization: Bearer <topic secret>``;
the secret is shown once, when the topic is created (or rotated), and stored hashed.
Messages live in the state database (``topic_messages``), so every API process and
worker sees them; a sync reads a topic as ``{"type": "topic", "id": N}``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reflow.connectors.base import SourceConnector, TableRef
from reflow.connectors.sources.http_request import SCHEMA
from reflow.db.repo import Page, PageParams, get_scoped, paginate
from reflow.db.tables import Source, Sync
from reflow.db.tables_links import Topic, TopicMessage
from reflow.errors import BadRequest, Conflict, NotFound, ReflowError, Unauthorized

SOURCE_TYPE = "http_request"
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
MAX_MESSAGES_PER_REQUEST = 10_000


class NotHttpRequestSource(ReflowError):
    status_code = 405


def infer_schema(message: dict[str, Any]) -> dict[str, str]:
    """Census's field -> type map; null values are typed ``string``."""
    return {key: _census_type(value) for key, value in message.items()}


def _census_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_source(source: Source) -> None:
    if source.type != SOURCE_TYPE:
        raise NotHttpRequestSource(
            f"source {source.id} is a {source.type!r} connection; topics need an HTTP Request "
            f"({SOURCE_TYPE!r}) source"
        )


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("name is required and must be a non-empty string")
    if not NAME.match(value):
        raise BadRequest(
            "name must start with a letter, digit or underscore and contain only letters, "
            "digits, '_', '.', '-' (at most 128 characters)"
        )
    return value


def _sample(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise BadRequest("sample_message is required and must be a non-empty JSON object")
    return value


def _description(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequest("description must be a string")
    return value


def _unique(session: Session, source: Source, name: str, topic_id: int | None = None) -> None:
    other = session.scalar(select(Topic).where(Topic.source_id == source.id, Topic.name == name))
    if other is not None and other.id != topic_id:
        raise Conflict(f"a topic named {name!r} already exists on source {source.id}")


def create(session: Session, *, source: Source, body: dict[str, Any]) -> tuple[Topic, str]:
    """The new topic and its ingestion secret (returned only here)."""
    _check_source(source)
    name, sample = _name(body.get("name")), _sample(body.get("sample_message"))
    description = _description(body.get("description"))
    _unique(session, source, name)
    secret = "ingest-" + secrets.token_urlsafe(32)
    topic = Topic(
        workspace_id=source.workspace_id,
        source_id=source.id,
        name=name,
        description=description,
        sample_message=sample,
        message_schema=infer_schema(sample),
        secret_hash=hash_secret(secret),
    )
    session.add(topic)
    _flush_unique(session, name)
    return topic, secret


def update(session: Session, *, source: Source, topic: Topic, body: dict[str, Any]) -> str | None:
    """Applies a PATCH; returns a new secret when ``rotate_secret`` is true."""
    _check_source(source)
    if "name" in body:
        name = _name(body["name"])
        _unique(session, source, name, topic.id)
        topic.name = name
    if "sample_message" in body:
        topic.sample_message = _sample(body["sample_message"])
        topic.message_schema = infer_schema(topic.sample_message)
    if "description" in body:
        topic.description = _description(body["description"])
    rotate = body.get("rotate_secret", False)
    if not isinstance(rotate, bool):
        raise BadRequest("rotate_secret must be a boolean")
    secret = None
    if rotate:
        secret = "ingest-" + secrets.token_urlsafe(32)
        topic.secret_hash = hash_secret(secret)
    _flush_unique(session, topic.name)
    return secret


def _flush_unique(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a topic named {name!r} already exists on this connection") from None


def get(session: Session, *, source: Source, topic_id: int) -> Topic:
    _check_source(source)
    topic = get_scoped(session, Topic, topic_id, source.workspace_id, "topic")
    if topic.source_id != source.id:
        raise NotFound(f"topic {topic_id} not found")
    return topic


def list_(session: Session, *, source: Source, params: PageParams) -> Page:
    _check_source(source)
    return paginate(session, select(Topic).where(Topic.source_id == source.id), params, Topic.id)


def find_for_sync(session: Session, *, source: Source, obj: dict[str, Any]) -> dict[str, Any]:
    """``source_attributes.object`` of a topic, by id or name, normalised."""
    if source.type != SOURCE_TYPE:
        raise BadRequest(f"source_attributes.object: source {source.id} has no topics")
    if obj.get("id") is not None:
        if not isinstance(obj["id"], int) or isinstance(obj["id"], bool):
            raise BadRequest("source_attributes.object.id must be an integer")
        topic = session.get(Topic, obj["id"])
    elif isinstance(obj.get("name"), str):
        topic = session.scalar(
            select(Topic).where(Topic.source_id == source.id, Topic.name == obj["name"])
        )
    else:
        raise BadRequest("source_attributes.object needs an id or a name for a topic")
    if topic is None or topic.source_id != source.id:
        raise BadRequest(f"source_attributes.object: no such topic in source {source.id}")
    return {"type": "topic", "id": topic.id}


# --- ingestion -------------------------------------------------------------------


def ingestion_topic(
    session: Session, *, source_id: int, topic_name: str, secret: str | None
) -> Topic:
    """The topic ``secret`` opens; checked before the body is read (api/routers/topics)."""
    topic = session.scalar(
        select(Topic).where(Topic.source_id == source_id, Topic.name == topic_name)
    )
    # Unknown topic and wrong secret look alike, so ids cannot be probed.
    if (
        topic is None
        or not secret
        or not secrets.compare_digest(topic.secret_hash, hash_secret(secret))
    ):
        raise Unauthorized("unknown topic or wrong ingestion secret")
    return topic


def ingest(
    session: Session, *, source_id: int, topic_name: str, secret: str | None, body: Any
) -> int:
    """Stores one message (a JSON object) or many (an array of objects), all or none."""
    topic = ingestion_topic(session, source_id=source_id, topic_name=topic_name, secret=secret)
    messages = body if isinstance(body, list) else [body]
    if not messages:
        raise BadRequest("the body holds no message")
    if len(messages) > MAX_MESSAGES_PER_REQUEST:
        raise BadRequest(f"at most {MAX_MESSAGES_PER_REQUEST} messages per request")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            where = f"message [{index}]" if isinstance(body, list) else "the body"
            raise BadRequest(f"{where} must be a JSON object")
    session.add_all(TopicMessage(topic_id=topic.id, payload=m) for m in messages)
    session.flush()
    return len(messages)


class StateDbMessages:
    """The :class:`MessageStore` of one source, read from the state database; each
    call opens its own short session, so reading never holds the run's transaction."""

    def __init__(self, engine: Engine, source_id: int) -> None:
        self._engine = engine
        self._source_id = source_id

    def _topic(self, session: Session, name: str) -> Topic:
        topic = session.scalar(
            select(Topic).where(Topic.source_id == self._source_id, Topic.name == name)
        )
        if topic is None:
            raise LookupError(f"topic {name!r} no longer exists")
        return topic

    def topic_schemas(self) -> dict[str, dict[str, str]]:
        with Session(self._engine) as session:
            rows = session.scalars(select(Topic).where(Topic.source_id == self._source_id))
            return {t.name: dict(t.message_schema) for t in rows}

    def sample(self, topic: str) -> dict[str, Any]:
        with Session(self._engine) as session:
            return dict(self._topic(session, topic).sample_message)

    def payloads(self, topic: str, *, batch_size: int) -> Iterator[list[dict[str, Any]]]:
        with Session(self._engine) as session:
            topic_id = self._topic(session, topic).id
        after = 0
        while True:
            with Session(self._engine) as session:
                rows = session.execute(
                    select(TopicMessage.id, TopicMessage.payload)
                    .where(TopicMessage.topic_id == topic_id, TopicMessage.id > after)
                    .order_by(TopicMessage.id)
                    .limit(batch_size)
                ).all()
            if not rows:
                return
            after = rows[-1][0]
            yield [r[1] for r in rows]


def query_for(session: Session, *, sync: Sync, connector: SourceConnector) -> str:
    """What a run reads for a topic: the connector gets the store, then the query."""
    topic = session.get(Topic, sync.source_object["id"])
    if topic is None:
        raise LookupError(f"topic {sync.source_object['id']} of sync {sync.id} no longer exists")
    attach = getattr(connector, "attach", None)
    if attach is None:
        raise LookupError(f"source {sync.source_id} cannot read topics")
    engine = session.get_bind()
    engine = engine if isinstance(engine, Engine) else engine.engine
    attach(StateDbMessages(engine, topic.source_id))
    return connector.table_query(TableRef("", SCHEMA, topic.name))


def describe(session: Session, *, obj: dict[str, Any]) -> dict[str, Any]:
    topic = session.get(Topic, obj["id"])
    if topic is None:
        return dict(obj)
    return {"type": "topic", "id": topic.id, "name": topic.name}
