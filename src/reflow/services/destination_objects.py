"""Destination objects: the cached object list of each destination, the background jobs
that refresh it (``refresh_objects``, ``refresh_fields``) and object creation
(``object_types``, ``object_creation_requests``).

A job is a ``destination_jobs`` row handed to the background pool once its transaction
commits; its id is the ``refresh_key``. The worker builds the connector, talks to the
destination outside any database transaction, then stores the result and marks the job
in one short transaction, so any API process can answer ``*_status``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reflow.connectors.base import (
    DestinationConnector,
    DestinationField,
    DestinationObject,
    ObjectType,
)
from reflow.connectors.errors import ObjectNotFound
from reflow.db.tables import Destination, utcnow
from reflow.db.tables_destinations import CachedDestinationObject, DestinationJob
from reflow.errors import BadRequest
from reflow.runtime import Runtime
from reflow.services import background, refresh

log = logging.getLogger(__name__)

KINDS = ("refresh_objects", "refresh_fields", "create_object")


# -- the cache ---------------------------------------------------------------------------
def cached(session: Session, *, destination_id: int) -> list[DestinationObject]:
    return cached_for(session, destination_ids=[destination_id]).get(destination_id, [])


def cached_for(
    session: Session, *, destination_ids: list[int]
) -> dict[int, list[DestinationObject]]:
    if not destination_ids:
        return {}
    rows = session.scalars(
        select(CachedDestinationObject)
        .where(CachedDestinationObject.destination_id.in_(destination_ids))
        .order_by(CachedDestinationObject.position, CachedDestinationObject.full_name)
    ).all()
    out: dict[int, list[DestinationObject]] = {}
    for row in rows:
        out.setdefault(row.destination_id, []).append(_load(row.data))
    return out


def _dump(obj: DestinationObject) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _load(data: dict[str, Any]) -> DestinationObject:
    fields = tuple(DestinationField(**f) for f in data.get("fields", ()))
    return DestinationObject(
        full_name=data["full_name"],
        label=data["label"],
        supported_operations=tuple(data.get("supported_operations", ())),
        fields=fields,
        allow_custom_fields=bool(data.get("allow_custom_fields", False)),
    )


def _replace_all(
    session: Session, destination_id: int, objects: list[DestinationObject],
    listed_at: dt.datetime,
) -> None:
    """The cache becomes the listing taken at ``listed_at``, except for objects cached
    after it (an object created or refreshed while the listing ran): those are newer
    than the listing, which must not erase or overwrite them."""
    mine = CachedDestinationObject.destination_id == destination_id
    session.execute(delete(CachedDestinationObject).where(
        mine, CachedDestinationObject.refreshed_at < listed_at))
    newer = set(session.scalars(select(CachedDestinationObject.full_name).where(mine)))
    for position, obj in enumerate(objects):
        if obj.full_name in newer:
            continue
        session.add(
            CachedDestinationObject(
                destination_id=destination_id,
                full_name=obj.full_name,
                position=position,
                data=_dump(obj),
                refreshed_at=listed_at,
            )
        )


def _put_one(session: Session, destination_id: int, obj: DestinationObject) -> None:
    row = session.scalar(
        select(CachedDestinationObject).where(
            CachedDestinationObject.destination_id == destination_id,
            CachedDestinationObject.full_name == obj.full_name,
        )
    )
    if row is None:
        last = session.scalars(
            select(CachedDestinationObject.position).where(
                CachedDestinationObject.destination_id == destination_id
            )
        ).all()
        row = CachedDestinationObject(
            destination_id=destination_id,
            full_name=obj.full_name,
            position=max(last, default=-1) + 1,
            data={},
        )
        session.add(row)
    row.data, row.refreshed_at = _dump(obj), utcnow()


def _drop_one(session: Session, destination_id: int, full_name: str) -> None:
    session.execute(
        delete(CachedDestinationObject).where(
            CachedDestinationObject.destination_id == destination_id,
            CachedDestinationObject.full_name == full_name,
        )
    )


# -- jobs --------------------------------------------------------------------------------
def start(
    session: Session,
    *,
    runtime: Runtime,
    destination: Destination,
    kind: str,
    object_full_name: str | None = None,
    request: dict[str, Any] | None = None,
) -> DestinationJob:
    assert kind in KINDS
    job = DestinationJob(
        workspace_id=destination.workspace_id,
        destination_id=destination.id,
        kind=kind,
        object_full_name=object_full_name,
        request=request,
    )
    return refresh.enqueue(session, job, lambda job_id: submit(runtime, job_id))


def refresh_after_change(session: Session, *, runtime: Runtime, destination: Destination) -> None:
    """A destination whose connection works gets its object list cached now, so the
    create/update response already embeds its objects (a background refresh answered
    ``objects: []`` for a destination whose tables a GET just after listed). When the
    listing fails it is left to a background refresh, as before."""
    if not destination.last_test_succeeded:
        return
    try:
        refresh_now(session, destination=destination, vault=runtime.vault)
    except Exception as exc:  # the destination's own message is logged; create goes on
        log.info("destination %s: objects not listed now (%s); refreshing in the background",
                 destination.id, _message(exc))
        start(session, runtime=runtime, destination=destination, kind="refresh_objects")


def refresh_now(session: Session, *, destination: Destination, vault: Any) -> None:
    """Fill the cache in this transaction (for callers with no background pool)."""
    from reflow.services import destinations

    conn = destinations.connector(destination, vault=vault)
    listed_at = utcnow()
    try:
        objects = conn.list_objects()
    finally:
        conn.close()
    _replace_all(session, destination.id, objects, listed_at)


def submit(runtime: Runtime, job_id: int) -> None:
    background.submit(runtime, job_id, run_job, kind="destination job")


def get_job(
    session: Session,
    *,
    destination: Destination,
    refresh_key: Any,
    kind: str,
    object_full_name: str | None = None,
) -> DestinationJob:
    """The job behind ``refresh_key`` for this destination (and object), or 404."""
    return refresh.find(
        session,
        DestinationJob,
        refresh_key,
        lambda job: (
            job.destination_id == destination.id
            and job.kind == kind
            and (object_full_name is None or job.object_full_name == object_full_name)
        ),
    )


status_body = refresh.status_body


def creation_status(session: Session, job: DestinationJob) -> dict[str, Any]:
    obj = None
    if job.status == "completed" and job.object_full_name:
        found = [
            o
            for o in cached(session, destination_id=job.destination_id)
            if o.full_name == job.object_full_name
        ]
        obj = found[0] if found else None
    request = job.request or {}
    return {
        "id": job.id,
        "status": job.status,
        "object_type": request.get("object_type"),
        "object_full_name": job.object_full_name,
        "message": job.message,
        "object": obj,
    }


def run_job(runtime: Runtime, job_id: int) -> None:
    """Run one job to its end state; never raises for an expected failure."""
    from reflow.services import destinations

    with runtime.session() as session:
        job = session.get(DestinationJob, job_id)
        if job is None or job.status != "processing":
            return
        destination = session.get(Destination, job.destination_id)
        if destination is None:
            return
        kind, name, request = job.kind, job.object_full_name, dict(job.request or {})
        try:
            conn = destinations.connector(destination, vault=runtime.vault)
        except Exception as exc:
            job.status, job.message, job.completed_at = "failed", _message(exc), utcnow()
            return
    destination_id = job.destination_id
    store: Callable[[Session], None] | None
    try:
        store = _work(conn, kind, name, request, destination_id, job_id)
    except Exception as exc:  # the destination's own message is the point
        log.info("destination job %s (%s) failed: %s", job_id, kind, _message(exc))
        store = _on_failure(kind, name, destination_id, exc)
        _finish(runtime, job_id, "failed", _message(exc), store)
        return
    finally:
        conn.close()
    _finish(runtime, job_id, "completed", None, store)


def _work(
    conn: Any,
    kind: str,
    name: str | None,
    request: dict[str, Any],
    destination_id: int,
    job_id: int,
) -> Callable[[Session], None]:
    if kind == "refresh_objects":
        listed_at = utcnow()
        objects = conn.list_objects()
        return lambda s: _replace_all(s, destination_id, objects, listed_at)
    if kind == "refresh_fields":
        obj = conn.get_object(name)
        return lambda s: _put_one(s, destination_id, obj)
    created = conn.create_object(
        request["object_type"], request.get("object_attributes") or {}, request.get("fields") or []
    )

    def store(session: Session) -> None:
        _put_one(session, destination_id, created)
        job = session.get(DestinationJob, job_id)
        if job is not None:
            job.object_full_name = created.full_name

    return store


def _on_failure(
    kind: str, name: str | None, destination_id: int, exc: Exception
) -> Callable[[Session], None] | None:
    if kind == "refresh_fields" and isinstance(exc, ObjectNotFound) and name:
        return lambda s: _drop_one(s, destination_id, name)
    return None


_message = refresh.failure_message


def _finish(
    runtime: Runtime,
    job_id: int,
    status: str,
    message: str | None,
    store: Callable[[Session], None] | None,
) -> None:
    for attempt in (1, 2):
        try:
            with runtime.session() as session:
                job = session.get(DestinationJob, job_id)
                if job is None:  # the destination was deleted meanwhile
                    return
                if store is not None:
                    store(session)
                job.status, job.message, job.completed_at = status, message, utcnow()
            return
        except IntegrityError:
            # Two refreshes of one destination raced on the cache; the second try sees
            # the first one's rows.
            if attempt == 2:
                raise


# -- object types and creation -----------------------------------------------------------
def object_types(cls: type) -> list[ObjectType]:
    return list(getattr(cls, "object_types", ()) or ())


def creation_request(cls: type[DestinationConnector], body: dict[str, Any]) -> dict[str, Any]:
    """The body of ``object_creation_requests``, checked against the connector's object
    types: every problem is a 400 naming the field."""
    types = {t.type: t for t in object_types(cls)}
    if not types:
        raise BadRequest(f"{cls.label} destinations cannot create objects")
    name = body.get("object_type")
    if name not in types:
        raise BadRequest(f"object_type must be one of: {', '.join(types)}")
    kind = types[name]
    attributes = body.get("object_attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise BadRequest("object_attributes must be an object")
    _check_attributes(kind.object_attributes, attributes, "object_attributes")
    fields = body.get("fields")
    if fields is None:
        fields = []
    if not isinstance(fields, list):
        raise BadRequest("fields must be an array of objects")
    if kind.field_attributes and not fields:
        raise BadRequest("fields must name at least one field")
    for i, field in enumerate(fields):
        if not isinstance(field, dict):
            raise BadRequest(f"fields[{i}] must be an object")
        _check_attributes(kind.field_attributes, field, f"fields[{i}]")
    return {"object_type": name, "object_attributes": attributes, "fields": fields}


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def _check_attributes(spec: tuple[Any, ...], given: dict[str, Any], where: str) -> None:
    known = {a.key: a for a in spec}
    for key in given:
        if key not in known:
            raise BadRequest(f"{where}.{key} is not an attribute; known: {', '.join(known)}")
    for attr in spec:
        value = given.get(attr.key)
        if value is None or value == "":
            if attr.required:
                raise BadRequest(f"{where}.{attr.key} is required")
            continue
        allowed = _JSON_TYPES.get(attr.type, (str,))
        if not isinstance(value, allowed) or (attr.type != "boolean" and isinstance(value, bool)):
            raise BadRequest(f"{where}.{attr.key} must be a {attr.type}")
        if attr.possible_values and value not in attr.possible_values:
            raise BadRequest(
                f"{where}.{attr.key} must be one of: {', '.join(attr.possible_values)}"
            )
