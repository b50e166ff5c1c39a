"""Syncs: a source object, a destination object, mappings and an operation."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from reflow.connectors.base import DestinationConnector, DestinationObject, options_error
from reflow.crypto import Vault
from reflow.db.engine import after_commit
from reflow.db.repo import Page, Paged, PageParams, get_scoped
from reflow.db.tables import Source, Sync, SyncRun, SyncRunRecord
from reflow.errors import BadRequest, NotFound
from reflow.services import destinations, models, sources, sync_cleanup, sync_columns

if TYPE_CHECKING:
    from reflow.runtime import Runtime

OPERATIONS = ("upsert", "update", "insert", "mirror", "append", "delete")
OPERATION_ALIASES = {"create": "insert"}
MAPPING_TYPES = (
    "column", "constant_value", "sync_metadata", "liquid_template", "segment_membership",
)
BASIC_TYPES = ("text", "number", "boolean", "datetime")
FIELD_BEHAVIORS = ("specific_properties", "sync_all_properties")
HISTORICAL_SYNC_OPERATIONS = ("backfill_all_records", "skip_current_records")
SYNC_METADATA_KEYS = ("sync_run_id", "sync_id", "sync_started_at", "record_synced_at")
#: ``mappings[].operation``, for array fields (Census reference §2.5).
MAPPING_OPERATIONS = ("merge", "overwrite")
#: Configuration fields kept as given and echoed back.
SETTINGS_DEFAULTS: dict[str, Any] = {
    "advanced_configuration": {},
    "field_behavior": "specific_properties",
    "field_normalization": None,
    "field_order": "alphabetical_column_name",
    "high_water_mark_attribute": None,
    "historical_sync_operation": None,
    "mirror_strategy": None,
    "failed_run_notifications_enabled": True,
    "failed_record_notifications_enabled": True,
    "failed_record_notifications_threshold_percent": 75,
    "lead_union_insert_to": None,
}


def normalise_operation(value: Any) -> str:
    op = OPERATION_ALIASES.get(value, value)
    if op not in OPERATIONS:
        raise BadRequest(f"operation {value!r} is not one of: {', '.join(OPERATIONS)}")
    return op


def create(
    session: Session, *, workspace_id: int, vault: Vault, body: dict[str, Any]
) -> Sync | None:
    """Validate and create; with ``validate_only`` nothing is stored and None returned."""
    sync = validated(session, workspace_id=workspace_id, vault=vault, body=body)
    if body.get("validate_only"):
        return None
    session.add(sync)
    session.flush()
    return sync


def validated(
    session: Session, *, workspace_id: int, vault: Vault, body: dict[str, Any]
) -> Sync:
    """A ``POST /syncs`` body checked and applied to a sync that is not stored (the dry
    run previews it)."""
    for field in ("operation", "source_attributes", "destination_attributes", "mappings"):
        if body.get(field) is None:
            raise BadRequest(f"{field} is required")
    sync = Sync(workspace_id=workspace_id, settings=dict(SETTINGS_DEFAULTS))
    _apply(session, sync, body, vault=vault)
    return sync


def update(session: Session, *, sync: Sync, vault: Vault, body: dict[str, Any]) -> Sync:
    """Top-level keys patch; a nested object sent replaces the stored one wholesale."""
    _apply(session, sync, body, vault=vault)
    session.flush()
    return sync


def _apply(session: Session, sync: Sync, body: dict[str, Any], *, vault: Vault) -> None:
    if "label" in body:
        sync.label = body["label"]
    if "paused" in body:
        if not isinstance(body["paused"], bool):
            raise BadRequest("paused must be a boolean")
        sync.paused = body["paused"]
    if "operation" in body:
        sync.operation = normalise_operation(body["operation"])
    if "source_attributes" in body:
        _apply_source(session, sync, body["source_attributes"])
    if "destination_attributes" in body:
        _apply_destination(session, sync, body["destination_attributes"])
    if "mappings" in body:
        sync.mappings = [_mapping(m, i) for i, m in enumerate(_list(body, "mappings"))]
    if "alert_attributes" in body:
        from reflow.services.alerts import validate_alert_attributes

        sync.alert_attributes = validate_alert_attributes(body["alert_attributes"])
    _apply_schedule(session, sync, body)
    settings = dict(sync.settings or SETTINGS_DEFAULTS)
    settings.update({k: body[k] for k in SETTINGS_DEFAULTS if k in body})
    if body.get("high_water_mark_attributes") is not None:
        settings["high_water_mark_attribute"] = _legacy_high_water_mark(
            body["high_water_mark_attributes"]
        )
    destination = body.get("destination_attributes")
    if isinstance(destination, dict):
        settings["lead_union_insert_to"] = destination.get("lead_union_insert_to")
    _check_settings(session, sync, settings)
    _check_segment_membership(sync)
    if "mappings" in body or "source_attributes" in body:
        sync_columns.check(session, sync, vault=vault)
    sync.settings = settings
    _check_against_destination(session, sync, vault)


def _check_settings(session: Session, sync: Sync, settings: dict[str, Any]) -> None:
    from reflow.engine.mapping import NORMALIZATIONS

    _one_of(settings, "field_behavior", FIELD_BEHAVIORS)
    if settings.get("field_normalization") is not None:
        _one_of(settings, "field_normalization", NORMALIZATIONS)
    advanced = settings.get("advanced_configuration")
    if advanced is None:
        settings["advanced_configuration"] = advanced = {}
    if not isinstance(advanced, dict):
        raise BadRequest("advanced_configuration must be an object")
    size = advanced.get("batch_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise BadRequest("advanced_configuration.batch_size must be a positive integer")
    for name in ("high_water_mark_attribute", "historical_sync_operation"):
        if settings.get(name) is not None and sync.operation != "append":
            raise BadRequest(f"{name} is only available for append syncs")
    if settings.get("historical_sync_operation") is not None:
        _one_of(settings, "historical_sync_operation", HISTORICAL_SYNC_OPERATIONS)
    hwm = settings.get("high_water_mark_attribute")
    if hwm is not None:
        _check_high_water_mark(session, sync, hwm)
    threshold = settings.get("failed_record_notifications_threshold_percent")
    if threshold is not None and (
        not isinstance(threshold, int) or isinstance(threshold, bool) or not 0 <= threshold <= 100
    ):
        raise BadRequest(
            "failed_record_notifications_threshold_percent must be an integer from 0 to 100"
        )


def _legacy_high_water_mark(value: Any) -> str | None:
    """The older ``high_water_mark_attributes`` form, ``{use_high_water_mark_diff_type,
    column_name}``, read as ``high_water_mark_attribute`` (the newer one)."""
    where = "high_water_mark_attributes"
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object with use_high_water_mark_diff_type"
                         " and column_name")
    if not value.get("use_high_water_mark_diff_type", True):
        return None
    column = value.get("column_name")
    if not isinstance(column, str) or not column:
        raise BadRequest(f"{where}.column_name must be the name of a source column")
    return column


def _one_of(settings: dict[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    if settings.get(name) not in allowed:
        raise BadRequest(f"{name} must be one of: {', '.join(allowed)}")


def _check_high_water_mark(session: Session, sync: Sync, column: Any) -> None:
    if not isinstance(column, str) or not column:
        raise BadRequest("high_water_mark_attribute must be the name of a source column")
    names = sync_columns.known(session, sync)
    if names and column.lower() not in names:
        raise BadRequest(
            f"high_water_mark_attribute: the source object has no column {column!r}"
        )


def _list(body: dict[str, Any], field: str) -> list[Any]:
    value = body[field]
    if not isinstance(value, list):
        raise BadRequest(f"{field} must be an array")
    return value


def _apply_source(session: Session, sync: Sync, attrs: Any) -> None:
    if not isinstance(attrs, dict):
        raise BadRequest("source_attributes must be an object")
    conn_id = attrs.get("connection_id")
    if not isinstance(conn_id, int):
        raise BadRequest("source_attributes.connection_id is required and must be an integer")
    source = sources.get(session, workspace_id=sync.workspace_id, source_id=conn_id)
    obj = attrs.get("object")
    if not isinstance(obj, dict):
        raise BadRequest("source_attributes.object is required and must be an object")
    sync.source_id = source.id
    if attrs.get("cohort_id") is not None:
        # Reflow has no cohorts; reading the whole dataset instead would send records
        # the cohort leaves out.
        raise BadRequest("source_attributes.cohort_id: cohorts are not supported by Reflow;"
                         " use a segment (filter_segment_id)")
    if "filter_segment_id" in attrs:  # Census names a segment beside the object
        obj = {**obj, "filter_segment_id": attrs["filter_segment_id"]}
    sync.source_object = _source_object(session, source, obj)


def _source_object(session: Session, source: Source, obj: dict[str, Any]) -> dict[str, Any]:
    kind = obj.get("type")
    if "filter_segment_id" in obj or kind in ("segment", "filter_segment_source"):
        return _segment_object(session, source, obj)
    if kind == "dataset":  # a SQL dataset is a model (same id), echoed as a dataset
        return {**_source_object(session, source, {**obj, "type": "model"}), "as": "dataset"}
    if kind == "model":
        if obj.get("id") is not None:
            if not isinstance(obj["id"], int):
                raise BadRequest("source_attributes.object.id must be an integer")
            model = models.get(session, source=source, model_id=obj["id"])
        elif obj.get("name"):
            found = models.find_by_name(session, source=source, name=obj["name"])
            if found is None:
                raise BadRequest(f"source_attributes.object.name: no model named {obj['name']!r}")
            model = found
        else:
            raise BadRequest("source_attributes.object needs an id or a name for a model")
        return {"type": "model", "id": model.id}
    if kind == "topic":
        from reflow.services import topics

        return topics.find_for_sync(session, source=source, obj=obj)
    if kind == "table" and obj.get("id") is not None and obj.get("table_name") is None:
        return _table_by_id(session, source, obj["id"])
    if kind == "table":
        names = ("table_catalog", "table_schema", "table_name")
        missing = [n for n in names[1:] if not isinstance(obj.get(n), str) or not obj.get(n)]
        if missing:
            raise BadRequest(f"source_attributes.object.{missing[0]} is required for a table")
        return {"type": "table", **{n: obj.get(n) for n in names}}
    raise BadRequest(
        f"source_attributes.object.type {kind!r} is not supported; use 'model' or 'table'"
    )


def _table_by_id(session: Session, source: Source, table_id: Any) -> dict[str, Any]:
    """The legacy form: a table of the source's catalogue by its id (``GET
    /sources/{id}/tables`` lists them)."""
    from reflow.db.tables_sources import SourceTable

    if not isinstance(table_id, int) or isinstance(table_id, bool):
        raise BadRequest("source_attributes.object.id must be an integer")
    table = session.get(SourceTable, table_id)
    if table is None or table.source_id != source.id:
        raise BadRequest(f"source_attributes.object.id: no table {table_id} in source {source.id}")
    return {"type": "table", "table_catalog": table.table_catalog,
            "table_schema": table.table_schema, "table_name": table.table_name}


def _segment_object(session: Session, source: Source, obj: dict[str, Any]) -> dict[str, Any]:
    from reflow.errors import NotFound
    from reflow.services import segments

    where = "source_attributes.filter_segment_id"
    seg_id = obj.get("filter_segment_id")
    if seg_id is None:
        where, seg_id = "source_attributes.object.id", obj.get("id")
    if not isinstance(seg_id, int) or isinstance(seg_id, bool):
        raise BadRequest(f"{where} is required for a segment and must be an integer")
    try:
        segment = segments.get(session, source=source, segment_id=seg_id)
    except NotFound:
        raise BadRequest(f"{where}: no segment {seg_id} in source {source.id}") from None
    return {"type": "segment", "id": segment.id}


def _apply_destination(session: Session, sync: Sync, attrs: Any) -> None:
    if not isinstance(attrs, dict):
        raise BadRequest("destination_attributes must be an object")
    conn_id = attrs.get("connection_id")
    if not isinstance(conn_id, int):
        raise BadRequest("destination_attributes.connection_id is required and must be an integer")
    destination = destinations.get(session, workspace_id=sync.workspace_id, destination_id=conn_id)
    obj = attrs.get("object")
    if not isinstance(obj, str) or not obj:
        raise BadRequest("destination_attributes.object is required and must be a string")
    sync.destination_id = destination.id
    sync.destination_object = obj


def _mapping(raw: Any, index: int) -> dict[str, Any]:
    where = f"mappings[{index}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object")
    src, to = raw.get("from"), raw.get("to")
    lookup_object, lookup_field = _lookup(raw, where)
    if not isinstance(src, dict) or src.get("type") not in MAPPING_TYPES:
        raise BadRequest(f"{where}.from.type must be one of: {', '.join(MAPPING_TYPES)}")
    if not isinstance(to, str) or not to:
        raise BadRequest(f"{where}.to is required and must be a string")
    _check_from(src, f"{where}.from")
    return {
        "from": {"type": src["type"], "data": src.get("data")},
        "to": to,
        "is_primary_identifier": bool(raw.get("is_primary_identifier", False)),
        "generate_field": bool(raw.get("generate_field", False)),
        "preserve_values": _flag(raw, "preserve_values", False, where),
        "operation": _mapping_operation(raw, where),
        "sync_null_values": _flag(raw, "sync_null_values", True, where),
        "lookup_object": lookup_object,
        "lookup_field": lookup_field,
    }


def _mapping_operation(raw: dict[str, Any], where: str) -> str | None:
    value = raw.get("operation")
    if value is not None and value not in MAPPING_OPERATIONS:
        raise BadRequest(f"{where}.operation must be one of: {', '.join(MAPPING_OPERATIONS)}"
                         " (or null)")
    return value


def _lookup(raw: dict[str, Any], where: str) -> tuple[str | None, str | None]:
    """``lookup_object``/``lookup_field``: both names, or neither."""
    values = []
    for name in ("lookup_object", "lookup_field"):
        value = raw.get(name)
        if value in (None, ""):
            value = None
        elif not isinstance(value, str):
            raise BadRequest(f"{where}.{name} must be a string")
        values.append(value)
    if (values[0] is None) != (values[1] is None):
        missing = "lookup_field" if values[1] is None else "lookup_object"
        raise BadRequest(f"{where}.{missing} is required with a lookup"
                         " (lookup_object and lookup_field go together)")
    return values[0], values[1]


def _flag(raw: dict[str, Any], name: str, default: bool, where: str) -> bool:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"{where}.{name} must be a boolean")
    return value


def _check_segment_membership(sync: Sync) -> None:
    """A ``segment_membership`` mapping sends the segment the sync reads: there must be
    one."""
    for index, mapping in enumerate(sync.mappings or []):
        if mapping["from"]["type"] != "segment_membership":
            continue
        if (sync.source_object or {}).get("type") != "segment":
            raise BadRequest(
                f"mappings[{index}].from: a segment_membership mapping needs a segment as"
                " the sync's source (source_attributes.object.type = segment)"
            )
        if mapping["is_primary_identifier"]:
            raise BadRequest(f"mappings[{index}]: a segment_membership mapping cannot be the"
                             " primary identifier")


def _check_from(src: dict[str, Any], where: str) -> None:
    data = src.get("data")
    kind = src["type"]
    if kind == "column" and (not isinstance(data, str) or not data):
        raise BadRequest(f"{where}.data must be the source column name")
    if kind == "constant_value" and (not isinstance(data, dict) or "value" not in data):
        raise BadRequest(f"{where}.data must be an object with value and basic_type")
    if (kind == "constant_value" and isinstance(data, dict)
            and data.get("basic_type", "text") not in BASIC_TYPES):
        raise BadRequest(f"{where}.data.basic_type must be one of: {', '.join(BASIC_TYPES)}")
    if kind == "segment_membership" and data is not None and (
        not isinstance(data, dict) or data.get("identify_by", "name") not in ("name", "id")
    ):
        raise BadRequest(f"{where}.data must be an object with identify_by: name or id")
    if kind == "sync_metadata" and data not in SYNC_METADATA_KEYS:
        raise BadRequest(f"{where}.data must be one of: {', '.join(SYNC_METADATA_KEYS)}")
    if kind == "liquid_template":
        template = data.get("liquid_template") if isinstance(data, dict) else None
        if not isinstance(template, str):
            raise BadRequest(f"{where}.data.liquid_template must be a string")
        _parse_liquid(template, f"{where}.data.liquid_template")


def _parse_liquid(template: str, where: str) -> None:
    from liquid import parse
    from liquid.exceptions import LiquidError

    try:
        parse(template)
    except LiquidError as exc:
        raise BadRequest(f"{where} does not parse: {exc}") from exc


def _apply_schedule(session: Session, sync: Sync, body: dict[str, Any]) -> None:
    from reflow.services.schedules import schedule_mode
    from reflow.services.sequences import check_no_cycle

    mode = schedule_mode(body, current=sync.mode or None)
    if mode is not None:
        where = "triggers.sync_sequence.sync_id"
        if body.get("mode") is not None:
            where = f"mode.{where}"
        check_no_cycle(session, sync=sync, mode=mode, where=where)
        sync.mode = mode


def _check_against_destination(session: Session, sync: Sync, vault: Vault) -> None:
    keys = [m for m in sync.mappings if m["is_primary_identifier"]]
    if len(keys) != 1:
        raise BadRequest("mappings: exactly one mapping must have is_primary_identifier: true")
    destination = destinations.get(
        session, workspace_id=sync.workspace_id, destination_id=sync.destination_id
    )
    cls = destinations.connector_class(destination, vault=vault)
    if sync.operation not in cls.capabilities.operations:
        raise BadRequest(
            f"operation {sync.operation!r} is not supported by {cls.label}; supported: "
            + ", ".join(cls.capabilities.operations)
        )
    obj = destinations.get_object(destination, vault=vault, full_name=sync.destination_object)
    _check_fields(obj, sync, keys[0]["to"])
    _check_lookups(sync, cls, obj, lambda name: destinations.get_object(
        destination, vault=vault, full_name=name))
    _check_field_preferences(sync, cls)
    _check_sync_options(sync, cls)


def _check_lookups(
    sync: Sync, cls: type[DestinationConnector], obj: DestinationObject,
    find: Callable[[str], DestinationObject],
) -> None:
    """A lookup mapping fills a reference field of ``obj`` with the record of
    ``lookup_object`` whose ``lookup_field`` holds the mapped value: the destination must
    resolve lookups, the field must reference that object, and the field must identify
    that object's records (an external id, a unique key)."""
    for index, mapping in enumerate(sync.mappings):
        name = mapping.get("lookup_object")
        if not name:
            continue
        where = f"mappings[{index}]"
        if not cls.capabilities.lookups:
            raise BadRequest(f"{where}.lookup_object: {cls.label} does not support lookups")
        if mapping["is_primary_identifier"]:
            raise BadRequest(f"{where}: a lookup mapping cannot be the primary identifier")
        target = obj.field(mapping["to"])
        if target is not None and target.lookup_object not in (None, name):
            raise BadRequest(f"{where}.lookup_object: {obj.full_name}.{target.full_name}"
                             f" references {target.lookup_object}, not {name}")
        if target is not None and target.lookup_object is None:
            raise BadRequest(f"{where}.to: {obj.full_name}.{target.full_name} is not a"
                             " reference field")
        try:
            parent = find(name)
        except NotFound:
            raise BadRequest(f"{where}.lookup_object: the destination has no object"
                             f" {name!r}") from None
        key = parent.field(mapping["lookup_field"])
        if key is None or not key.identifier:
            raise BadRequest(f"{where}.lookup_field: {parent.full_name} has no external id"
                             f" or unique field {mapping['lookup_field']!r}")


def _check_field_preferences(sync: Sync, cls: type[DestinationConnector]) -> None:
    """``preserve_values: true`` needs a destination that reads the record's current
    value while writing (``field_preferences``); ``sync_null_values: false`` one that
    does that or leaves a null out of the record it sends (``sync_null_values``).
    Elsewhere they are refused rather than silently ignored."""
    caps = cls.capabilities
    supported = {"preserve_values": caps.field_preferences,
                 "sync_null_values": caps.field_preferences or caps.sync_null_values}
    for index, mapping in enumerate(sync.mappings):
        for name, default in (("sync_null_values", True), ("preserve_values", False)):
            if mapping.get(name, default) != default and not supported[name]:
                why = (" (it cannot read a record's current value)"
                       if name == "preserve_values" else "")
                raise BadRequest(
                    f"mappings[{index}].{name}: {cls.label} does not support"
                    f" {name}: {str(not default).lower()}{why}"
                )


def _check_sync_options(sync: Sync, cls: type) -> None:
    """Validate ``advanced_configuration`` with the destination's ``sync_options_model``
    and store it normalised (keys the model does not know are kept as given)."""
    model = getattr(cls, "sync_options_model", None)
    if model is None:
        return
    settings = dict(sync.settings)
    all_properties = settings.get("field_behavior") == "sync_all_properties"
    context = {
        "object_name": sync.destination_object,
        "fields": None if all_properties else [m["to"] for m in sync.mappings],
    }
    try:
        options = model.model_validate(settings.get("advanced_configuration") or {},
                                       context=context)
    except ValidationError as exc:
        raise BadRequest(options_error(exc)) from None
    settings["advanced_configuration"] = options.model_dump(mode="json", exclude_unset=True)
    sync.settings = settings


def _check_fields(obj: DestinationObject, sync: Sync, key_field: str) -> None:
    if sync.operation not in obj.supported_operations:
        raise BadRequest(
            f"operation {sync.operation!r} is not supported by object {obj.full_name!r}"
        )
    if obj.allow_custom_fields:
        return
    for i, mapping in enumerate(sync.mappings):
        if obj.field(mapping["to"]) is None:
            raise BadRequest(f"mappings[{i}].to: {obj.full_name} has no field {mapping['to']!r}")
    key = obj.field(key_field)
    if sync.operation != "append" and key is not None and not key.identifier:
        raise BadRequest(
            f"mappings: {key_field!r} cannot identify records in {obj.full_name} "
            "(it needs a unique or primary key)"
        )


def get(session: Session, *, workspace_id: int, sync_id: int) -> Sync:
    return get_scoped(session, Sync, sync_id, workspace_id, "sync")


_LIST = Paged(select(Sync).where(Sync.workspace_id == bindparam("workspace_id")), Sync.id)


def list_(session: Session, *, workspace_id: int, params: PageParams) -> Page:
    return _LIST.page(session, params, workspace_id=workspace_id)


def delete(session: Session, *, sync: Sync, runtime: Runtime | None = None) -> None:
    """Delete the sync and its runs. Given the ``runtime``, what the sync kept outside
    the state database goes too once the delete commits (``forget_snapshots``)."""
    run_ids = select(SyncRun.id).where(SyncRun.sync_id == sync.id)
    if runtime is not None:
        source = session.get(Source, sync.source_id)
        ids = list(session.scalars(run_ids))  # read before the runs are deleted
        after_commit(session, partial(sync_cleanup.forget_snapshots, runtime, sync.id, source,
                                      ids))
    session.execute(sql_delete(SyncRunRecord).where(SyncRunRecord.run_id.in_(run_ids)))
    session.execute(sql_delete(SyncRun).where(SyncRun.sync_id == sync.id))
    session.delete(sync)
    session.flush()


def last_run(session: Session, *, sync: Sync) -> SyncRun | None:
    """The last run that ran (as a list of syncs shows it: ``listing.last_runs``)."""
    from reflow.services.listing import last_runs

    return last_runs(session, sync_ids=[sync.id]).get(sync.id)
