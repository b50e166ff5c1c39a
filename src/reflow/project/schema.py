"""The project files as pydantic models: one source of truth for loading, comparing,
exporting and the JSON Schema published for editors (``reflow schema``).

Field names are the API's own: a source reads like the ``connection`` object of
``POST /sources``, a sync like a ``POST /syncs`` body. Where the API takes a database
id, the project takes the referenced object's slug (``connection_id: warehouse``).
Defaults are the API's create defaults, so a field left out means "as the API would
create it", and ``export`` writes only what differs from them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

KINDS = ("source", "destination", "model", "segment", "sync")
#: Folder of each kind in a project, and the order objects are applied in.
FOLDERS = {
    "source": "sources", "model": "models", "segment": "segments",
    "destination": "destinations", "sync": "syncs",
}
DEFAULT_MODE: dict[str, Any] = {
    "type": "triggered", "triggers": {"schedule": {"frequency": "never"}}
}
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,199}$"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SourceSpec(Spec):
    """A source: the ``connection`` object of ``POST /sources``."""

    type: str = Field(description="The source type's service_name (GET /source_types).")
    name: str
    credentials: dict[str, Any] = Field(
        default_factory=dict,
        description="Connection settings. Secret fields are written as ${ENV_VAR} and read"
        " from the environment at apply time; the API never returns them.",
    )
    dbt_manifest: str | None = Field(
        default=None,
        description="A dbt project on the Reflow host (its directory, or its manifest.json)"
        " or the http(s) URL of a manifest.json; its models become models of this source"
        " (POST /sources/{id}/projects), re-read on every apply. Syncs name them as"
        " {type: dbt_model, id: <dbt model name>}.",
    )


class DestinationSpec(Spec):
    """A destination: the ``service_connection`` object of ``POST /destinations``."""

    type: str = Field(description="The destination type's service_name (GET /connectors).")
    name: str
    credentials: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(Spec):
    """A model (Census's SQL dataset): the body of ``POST /sources/{id}/models``."""

    source_id: str = Field(description="Slug of the source the model reads.")
    name: str
    query: str | None = Field(default=None, description="The SQL; or query_file.")
    query_file: str | None = Field(
        default=None, description="A .sql file holding the query, relative to this file."
    )
    description: str | None = None

    @model_validator(mode="after")
    def _one_query(self) -> ModelSpec:
        if (self.query is None) == (self.query_file is None):
            raise ValueError("give exactly one of query and query_file")
        return self


class SegmentSpec(Spec):
    """A filter segment over a model: the body of POST /sources/{id}/filter_segments."""

    source_id: str = Field(description="Slug of the source.")
    name: str
    model_id: str = Field(description="Slug of the model the segment filters.")
    molecules: list[Any] = Field(description="The filter, as the API takes it.")


class SourceObjectRef(Spec):
    type: Literal["model", "table", "dbt_model", "segment"] = "model"
    id: str | None = Field(
        default=None,
        description="Slug of the model (type: model) or segment (segment), or the dbt"
        " model's name (dbt_model).",
    )
    table_catalog: str | None = None
    table_schema: str | None = None
    table_name: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> SourceObjectRef:
        if self.type == "model" and not self.id:
            raise ValueError("a model object needs id: the model's slug")
        if self.type == "segment" and not self.id:
            raise ValueError("a segment object needs id: the segment's slug")
        if self.type == "dbt_model" and not self.id:
            raise ValueError("a dbt_model object needs id: the dbt model's name")
        if self.type == "table" and not (self.table_schema and self.table_name):
            raise ValueError("a table object needs table_schema and table_name")
        return self


class SourceAttributes(Spec):
    connection_id: str = Field(description="Slug of the source.")
    object: SourceObjectRef


class DestinationAttributes(Spec):
    connection_id: str = Field(description="Slug of the destination.")
    object: str = Field(description="The destination object's full_name.")
    lead_union_insert_to: str | None = None


class MappingFrom(Spec):
    type: Literal[
        "column", "constant_value", "sync_metadata", "liquid_template", "segment_membership"
    ]
    data: Any = None


class Mapping(Spec):
    from_: MappingFrom = Field(alias="from")
    to: str
    is_primary_identifier: bool = False
    generate_field: bool = False
    preserve_values: bool = False
    operation: str | None = None
    sync_null_values: bool = True
    lookup_object: str | None = None
    lookup_field: str | None = None


class SyncSpec(Spec):
    """A sync: a ``POST /syncs`` body with slugs where the API takes ids."""

    label: str | None = None
    operation: Literal["upsert", "update", "insert", "mirror", "append", "delete"]
    paused: bool = False
    source_attributes: SourceAttributes
    destination_attributes: DestinationAttributes
    mappings: list[Mapping]
    mode: dict[str, Any] = Field(
        default=DEFAULT_MODE, description="The schedule, as GET /syncs/{id} returns it."
    )
    alert_attributes: list[dict[str, Any]] = []
    advanced_configuration: dict[str, Any] = {}
    field_behavior: Literal["specific_properties", "sync_all_properties"] = "specific_properties"
    field_normalization: str | None = None
    field_order: str = "alphabetical_column_name"
    high_water_mark_attribute: str | None = None
    historical_sync_operation: str | None = None
    mirror_strategy: str | None = None
    failed_run_notifications_enabled: bool = True
    failed_record_notifications_enabled: bool = True
    failed_record_notifications_threshold_percent: int = 75


SPECS: dict[str, type[Spec]] = {
    "source": SourceSpec,
    "destination": DestinationSpec,
    "model": ModelSpec,
    "segment": SegmentSpec,
    "sync": SyncSpec,
}


class ProjectFile(Spec):
    """``reflow.yml``: the project's header; objects may also be written inline here,
    keyed by slug, instead of one file each under sources/, models/, segments/,
    destinations/, syncs/."""

    version: Literal[1] = 1
    sources: dict[str, SourceSpec] = {}
    models: dict[str, ModelSpec] = {}
    segments: dict[str, SegmentSpec] = {}
    destinations: dict[str, DestinationSpec] = {}
    syncs: dict[str, SyncSpec] = {}


def json_schema() -> dict[str, Any]:
    """One schema document: ``reflow.yml`` at the root, each object kind under $defs
    (editors map ``sources/*.yml`` to ``#/$defs/SourceSpec`` and so on)."""
    schema = ProjectFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://reflow.invalid/reflow.schema.json"
    schema["title"] = "Reflow project"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
