"""Request bodies, as ``/openapi.json`` describes them.

The routers hand the services the parsed dict (``deps.body_of``), and the services
keep their own validation and Census-worded messages; these models say what a body
may hold. Every model tolerates fields it does not name, as Census does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from reflow.api.schemas.common import Open

Operation = Literal["upsert", "update", "create", "mirror", "append", "delete"]


class Connection(Open):
    type: str = Field(description="A source type's service_name (GET /source_types).")
    credentials: dict[str, Any] = Field(description="The type's configuration_fields.")
    name: str | None = None
    label: str | None = None
    sync_engine: Literal["basic", "advanced"] | None = None
    read_only_connection: bool | None = None
    warehouse_writeback_retention_in_days: int | None = None


class ConnectionChanges(Open):
    credentials: dict[str, Any] | None = Field(None, description="Merged into the stored ones.")
    name: str | None = None
    label: str | None = None
    sync_engine: Literal["basic", "advanced"] | None = None
    read_only_connection: bool | None = None


class SourceCreate(Open):
    connection: Connection


class SourceUpdate(Open):
    connection: ConnectionChanges


class ServiceConnection(Open):
    type: str = Field(description="A destination type's service_name (GET /connectors).")
    credentials: dict[str, Any]
    name: str | None = None


class ServiceConnectionChanges(Open):
    credentials: dict[str, Any] | None = None
    name: str | None = None


class DestinationCreate(Open):
    service_connection: ServiceConnection


class DestinationUpdate(Open):
    service_connection: ServiceConnectionChanges


class ModelCreate(Open):
    name: str
    query: str = Field(description="SQL run in the source (REFLOW_MAX_MODEL_QUERY_CHARS at most).")
    description: str | None = None


class ModelUpdate(Open):
    name: str | None = None
    query: str | None = None
    description: str | None = None


class DatasetCreate(Open):
    type: Literal["sql"] = "sql"
    name: str
    query: str
    source_id: int
    description: str | None = None


class DatasetUpdate(Open):
    name: str | None = None
    query: str | None = None
    description: str | None = None


class Mapping(Open):
    # Census's forms: {"from": {"type": "column", "data": "email"}, "to": "email"} and
    # constants, liquid templates, sync metadata; "from" is left open for them.
    from_: dict[str, Any] | str = Field(alias="from")
    to: str
    is_primary_identifier: bool | None = None


class Schedule(Open):
    schedule_frequency: str | None = Field(
        None, description="never, continuous, quarter_hourly, hourly, daily, weekly, expression"
    )
    schedule_day: str | None = None
    schedule_hour: int | None = None
    schedule_minute: int | None = None
    cron_expression: str | None = None


class SyncCreate(Schedule):
    label: str | None = None
    operation: Operation
    source_attributes: dict[str, Any] = Field(
        description='{"connection_id": N, "object": {"type": "table"|"model"|"segment", ...}}'
    )
    destination_attributes: dict[str, Any] = Field(
        description='{"connection_id": N, "object": "<destination object full_name>"}'
    )
    mappings: list[Mapping]
    paused: bool | None = None
    alert_attributes: list[dict[str, Any]] | None = None
    validate_only: bool | None = Field(None, description="Check the body, create nothing.")


class SyncUpdate(Schedule):
    label: str | None = None
    operation: Operation | None = None
    source_attributes: dict[str, Any] | None = None
    destination_attributes: dict[str, Any] | None = None
    mappings: list[Mapping] | None = None
    paused: bool | None = None
    alert_attributes: list[dict[str, Any]] | None = None


class SyncTrigger(Open):
    force_full_sync: bool | None = Field(None, description="Also accepted as a query parameter.")


class SegmentCreate(Open):
    name: str
    model_id: int | None = None
    table_id: int | None = None
    dataset_id: int | None = None
    molecules: list[Any] | dict[str, Any] | None = Field(
        None,
        description='The filter: atoms {"attribute", "operator", "value"}, nested lists, "OR".',
    )


class SegmentUpdate(Open):
    name: str | None = None
    molecules: list[Any] | dict[str, Any] | None = None


class WebhookCreate(Open):
    name: str
    endpoint: str = Field(description="https URL the events are posted to.")
    events: list[str] | None = None
    description: str | None = None


class WebhookUpdate(Open):
    endpoint: str | None = None
    events: list[str] | None = None
    name: str | None = None
    description: str | None = None
    secret: str | None = None


class LinkCreate(Open):
    redirect_uri: str | None = Field(None, description="Where the link's page returns.")


class ConnectLinkCreate(LinkCreate):
    type: str | None = Field(None, description="The source/destination type the link sets up.")


class ConnectorCreate(Open):
    connector: dict[str, Any] = Field(description="A custom API destination's definition.")


class ObjectCreationRequest(Open):
    object_type: str
    object_attributes: dict[str, Any] | None = None
    fields: list[dict[str, Any]] | None = None


class TopicCreate(Open):
    name: str
    description: str | None = None
    sample_message: dict[str, Any] | None = None


class TopicUpdate(Open):
    name: str | None = None
    description: str | None = None
    sample_message: dict[str, Any] | None = None
    rotate_secret: bool | None = None


class ProjectCreate(Open):
    name: str | None = None
    type: str | None = None
    path: str | None = None


class UserUpdate(Open):
    user: dict[str, Any] | None = Field(
        None, description='{"role": ...}; the fields may also be sent at the top level.'
    )


class InvitationCreate(Open):
    email: str
    role: str | None = None
    workspaces: list[dict[str, Any]] | None = None


class InvitationUpdate(Open):
    role: str | None = None


class WorkspaceCreate(Open):
    name: str
    notification_emails: list[str] | None = None
    return_workspace_api_key: bool | None = None


class WorkspaceUpdate(Open):
    name: str | None = None
    notification_emails: list[str] | None = None


class WorkspaceUserSet(Open):
    role: str


class WorkspaceInvitationCreate(Open):
    emails: list[str]
    role: str


class WorkspaceInvitationUpdate(Open):
    role: str | None = None


class ManagedObjectMark(Open):
    """Reflow extension (config as code): mark an object as managed by a project."""

    slug: str = Field(description="The object's stable name in the project.")
    managed_by: str | None = Field(None, description="The managing tool (reflow-project).")
