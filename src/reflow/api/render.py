"""ORM rows -> Census wire objects."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import Row

from reflow.api.envelope import iso
from reflow.connectors.base import DestinationConnector, DestinationObject, SourceConnector
from reflow.db.tables import Destination, Source, SourceModel, Sync, SyncRun
from reflow.errors import run_error_code
from reflow.services.connections import configuration_fields
from reflow.services.listing import LastRun
from reflow.services.schedules import schedule_fields


def source_type(cls: type[SourceConnector]) -> dict[str, Any]:
    return {
        "documentation_slug": cls.documentation_slug,
        "label": cls.label,
        "service_name": cls.service_name,
        "supported_sync_engines": (
            ["advanced", "basic"] if cls.capabilities.supports_bookkeeping else ["basic"]
        ),
        "creatable_via_api": True,
        "creatable_via_connect_link": True,
        "editable_via_api": True,
        "supports_warehouse_writeback": False,
        "supported_object_kinds": list(cls.capabilities.object_kinds),
        "configuration_fields": configuration_fields(cls.config_model),
    }


def destination_type(cls: type[DestinationConnector]) -> dict[str, Any]:
    return {
        "documentation_slug": cls.documentation_slug,
        "label": cls.label,
        "service_name": cls.service_name,
        "auth_method": "credentials",
        "creatable_via_api": True,
        "creatable_via_connect_link": True,
        "source_creatable_via_connect_link": False,
        "supports_test": True,
        "configuration_fields": configuration_fields(cls.config_model),
    }


def _test_fields(row: Source | Destination) -> dict[str, Any]:
    return {
        "last_test_results": row.last_test_results,
        "last_test_succeeded": row.last_test_succeeded,
        "last_tested_at": iso(row.last_tested_at),
    }


def source(row: Source) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "label": row.label if row.label is not None else row.name,
        "type": row.type,
        "sync_engine": row.sync_engine,
        "created_at": iso(row.created_at),
        **_test_fields(row),
        "connection_details": row.connection_details,
        "read_only_connection": row.read_only_connection,
        "warehouse_writeback_retention_in_days": row.warehouse_writeback_retention_in_days,
    }


def model(row: SourceModel) -> dict[str, Any]:
    return {
        "type": "model",
        "id": row.id,
        "name": row.name,
        "dataset_id": row.id,
        "description": row.description,
        "query": row.query,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "compiled_query": None,
        "columns": row.columns,
        "dataset_id=": row.id,
        "source_object_id": row.id,
    }


def destination(row: Destination, objects: list[DestinationObject] | None = None) -> dict[str, Any]:
    from reflow.connectors import registry

    cls = registry.destination_types().get(row.type)
    return {
        "id": row.id,
        "name": row.name,
        "type": row.type,
        "created_at": iso(row.created_at),
        **_test_fields(row),
        "connection_details": row.connection_details,
        "is_file_system": bool(cls and cls.capabilities.file_system),
        "objects": [
            destination_object(o, getattr(cls, "sync_options_model", None),
                               preserve_values=bool(cls and cls.capabilities.field_preferences))
            for o in objects or []
        ],
    }


def destination_object(
    obj: DestinationObject, options_model: type[BaseModel] | None = None,
    *, preserve_values: bool = False,
) -> dict[str, Any]:
    """``options_model``: the destination's ``sync_options_model``, rendered as the
    object's ``advanced_configuration_field_definitions``."""
    definitions = sync_option_definitions(options_model) if options_model else []
    return {
        "label": obj.label,
        "full_name": obj.full_name,
        "supported_operations": list(obj.supported_operations),
        "allow_custom_fields": obj.allow_custom_fields,
        "allow_case_sensitive_fields": True,
        "supports_field_ordering": False,
        "can_be_sync_destination": True,
        "advanced_configuration_field_definitions": definitions,
        "configurable_field_definitions": {d["name"]: d["type"] for d in definitions},
        "fields": [
            {
                "label": f.label,
                "full_name": f.full_name,
                "createable": f.createable,
                "updateable": f.updateable,
                "operations": ["overwrite"],
                "array": False,
                # The destination reads current values (``field_preferences``).
                "preserve_values_supported": preserve_values and f.updateable,
                "required_for_mapping": f.required,
                "can_be_upsert_key": f.identifier,
                "can_be_update_key": f.identifier,
                "can_be_insert_key": f.identifier,
                "can_be_reference_key": f.identifier,
                "lookup_object": f.lookup_object,
                "type": f.type,
            }
            for f in obj.fields
        ],
    }


def sync_option_definitions(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Census's per-object sync options (§15.1), one per field of the options model."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    out = []
    for order, (name, prop) in enumerate(schema.get("properties", {}).items(), start=1):
        kind, values = _option_type(prop)
        out.append({
            "name": name,
            "type": kind,
            "label": prop.get("title", name),
            "input_type": prop.get("input_type") or ("dropdown" if values else "text"),
            "placeholder": prop.get("placeholder"),
            "sort_order": order,
            "required": name in required,
            "default": prop.get("default"),
            "supported_values": values,
        })
    return out


def _option_type(prop: dict[str, Any]) -> tuple[str, list[Any]]:
    """(type name, allowed values) of one JSON Schema property; optional ones are anyOf."""
    for option in [prop, *prop.get("anyOf", [])]:
        kind = option.get("type")
        if "enum" in option:
            return "string", list(option["enum"])
        if kind == "boolean":
            return "boolean", [True, False]
        if kind in ("integer", "number", "string"):
            return {"number": "float"}.get(kind, kind), []
    return "string", []


def sync(row: Sync | Row[Any], *, source_object: dict[str, Any],
         last_run: SyncRun | LastRun | None) -> dict[str, Any]:
    """``row``: the ORM object or a row of the table's columns (``services/listing``)."""
    settings = dict(row.settings)
    lead_union = settings.pop("lead_union_insert_to", None)
    return {
        "id": row.id,
        "label": row.label,
        "resource_identifier": f"sync_{row.id}",
        "status": _sync_status(last_run),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "operation": row.operation,
        "paused": row.paused,
        "source_attributes": {"connection_id": row.source_id, **_segment_ref(source_object),
                              "object": source_object},
        "destination_attributes": {
            "connection_id": row.destination_id,
            "object": row.destination_object,
            "lead_union_insert_to": lead_union,
        },
        "mappings": row.mappings,
        **schedule_fields(row.mode),
        "alert_attributes": row.alert_attributes,
        **settings,
        "sync_behavior_family": "activateEvents" if row.operation == "append" else "mapRecords",
        "high_water_mark_attributes": None,
        "match_rate_details": {"match_rate": None, "match_rate_last_calculated_at": None},
        "lead_union_insert_to": lead_union,
        "trigger_on_dbt_cloud_rebuild": False,
        "last_run_id": last_run.id if last_run else None,
        "last_run_at": iso(last_run.created_at) if last_run else None,
        "workspace_id": row.workspace_id,
    }


def _segment_ref(source_object: dict[str, Any]) -> dict[str, Any]:
    """Census names a segment source at the top of ``source_attributes`` too."""
    if source_object.get("type") != "filter_segment_source":
        return {}
    return {"filter_segment_id": source_object.get("filter_segment_id")}


def _sync_status(last_run: SyncRun | LastRun | None) -> str:
    """Census's sync health: never run, last run ok, last run failed."""
    if last_run is None:
        return "Ready"
    return {"failed": "Failing", "completed": "Up to Date"}.get(last_run.status, "Ready")


def sync_run(row: SyncRun | Row[Any]) -> dict[str, Any]:
    """``row``: the ORM object or a row of the table's columns (``services/runs.read``)."""
    return {
        "id": row.id,
        "sync_id": row.sync_id,
        "status": row.status,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "completed_at": iso(row.completed_at),
        "scheduled_execution_time": iso(row.scheduled_execution_time),
        "source_record_count": row.source_record_count,
        "source_record_updates": row.source_record_updates,
        "source_record_deletes": row.source_record_deletes,
        "source_record_invalids": row.source_record_invalids,
        "records_invalid": row.source_record_invalids,
        "records_processed": row.records_processed,
        "records_updated": row.records_updated,
        "records_failed": row.records_failed,
        "error_code": run_error_code(row.error_code),
        "error_message": row.error_message,
        "error_detail": row.error_detail,
        "canceled": row.canceled,
        "full_sync": row.full_sync,
        "current_step": row.current_step if row.status == "working" else None,
        "sync_trigger_reason": row.sync_trigger_reason,
    }
