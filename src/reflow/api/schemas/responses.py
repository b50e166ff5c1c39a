"""What the API answers, as ``/openapi.json`` describes it (the routers render with
``api/render*.py``; these models are the contract schemathesis checks those renders
against). Fields a render may leave null are nullable; objects tolerate extra fields,
so a new field in a render never breaks a strict client."""

from __future__ import annotations

from typing import Any

from reflow.api.schemas.common import Envelope, ListEnvelope, Open, StatusOnly

Json = dict[str, Any]


class TestFields(Open):
    last_test_results: Json | None = None
    last_test_succeeded: bool | None = None
    last_tested_at: str | None = None


class SourceRead(TestFields):
    id: int
    name: str | None = None
    label: str | None = None
    type: str
    sync_engine: str | None = None
    created_at: str | None = None
    connection_details: Json | None = None
    read_only_connection: bool | None = None
    warehouse_writeback_retention_in_days: int | None = None


class ModelRead(Open):
    type: str
    id: int
    name: str
    dataset_id: int
    description: str | None = None
    query: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    columns: list[Json] | None = None


class DestinationFieldRead(Open):
    label: str | None = None
    full_name: str
    createable: bool | None = None
    updateable: bool | None = None
    required_for_mapping: bool | None = None
    can_be_upsert_key: bool | None = None
    type: str | None = None


class DestinationObjectRead(Open):
    label: str | None = None
    full_name: str
    supported_operations: list[str]
    allow_custom_fields: bool | None = None
    advanced_configuration_field_definitions: list[Json] | None = None
    fields: list[DestinationFieldRead]


class DestinationRead(TestFields):
    id: int
    name: str | None = None
    type: str
    created_at: str | None = None
    connection_details: Json | None = None
    is_file_system: bool
    objects: list[DestinationObjectRead]


class SyncRead(Open):
    id: int
    label: str | None = None
    resource_identifier: str
    status: str
    created_at: str | None = None
    updated_at: str | None = None
    operation: str
    paused: bool
    source_attributes: Json
    destination_attributes: Json
    mappings: list[Json]
    last_run_id: int | None = None
    last_run_at: str | None = None
    workspace_id: int


class SyncRunRead(Open):
    id: int
    sync_id: int
    status: str
    created_at: str | None = None
    updated_at: str | None = None
    completed_at: str | None = None
    source_record_count: int | None = None
    records_processed: int | None = None
    records_updated: int | None = None
    records_failed: int | None = None
    records_invalid: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    canceled: bool | None = None
    full_sync: bool | None = None


class SyncCreated(Open):
    sync_id: int


class SyncRunCreated(Open):
    sync_run_id: int


class SyncValidated(Open):
    """``POST /syncs`` with ``validate_only``: nothing created."""

    status: str
    message: str | None = None
    data: SyncCreated | None = None


class SourceTypeRead(Open):
    service_name: str
    label: str
    configuration_fields: Any = None


class DestinationTypeRead(Open):
    service_name: str
    label: str
    configuration_fields: Any = None


class ObjectTypeRead(Open):
    pass


class ObjectCreationRead(Open):
    id: int
    status: str


class ObjectCreated(Open):
    status: str
    url: str
    data: ObjectCreationRead


class TableRead(Open):
    table_catalog: str | None = None
    table_schema: str | None = None
    table_name: str


class SourceObjectRead(Open):
    """A table, model or segment of ``GET /sources/{id}/objects``."""

    type: str
    id: int


class TableObjectRead(SourceObjectRead):
    table_catalog: str | None = None
    table_schema: str | None = None
    table_name: str
    columns: list[Json] | None = None


class ColumnRead(Open):
    name: str
    data_type: str | None = None


class SegmentRead(Open):
    type: str
    id: int
    name: str
    model_id: int | None = None
    table_id: int | None = None
    record_count: int | None = None
    created_at: str | None = None
    updated_at: str | None = None


class SegmentStatus(Open):
    id: int
    creation_status: bool


class DatasetRead(Open):
    id: int
    type: str
    name: str
    source_id: int
    query: str | None = None
    description: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    columns: list[Json]


class WebhookRead(Open):
    id: int
    name: str | None = None
    description: str | None = None
    events: list[str]
    endpoint: str
    created_at: str | None = None
    updated_at: str | None = None


class DeliveryRead(Open):
    id: int
    webhook_id: int
    status: str
    attempts: int


class AlertRead(Open):
    id: int
    sync_id: int | None = None
    sync_run_id: int | None = None
    status: str | None = None


class LinkRead(Open):
    id: int
    type: str
    expiration: str | None = None
    expired: bool
    revoked: bool
    uri: str
    redirect_uri: str | None = None


class TopicRead(Open):
    id: int
    name: str
    description: str | None = None
    ingestion_url: str


class ProjectRead(Open):
    id: int
    name: str | None = None
    type: str | None = None
    source_id: int
    models: list[Json]


class ProjectRefreshStatus(Open):
    status: str
    details: Json


class UserRead(Open):
    id: int
    email: str
    role: str | None = None
    created_at: str | None = None


class InvitationRead(Open):
    id: int
    email: str
    role: str | None = None
    associated_workspace_invitations: list[Json]


class WorkspaceRead(Open):
    id: int
    name: str
    organization_id: int
    created_at: str | None = None
    notification_emails: list[str]


class WorkspaceUserRead(Open):
    id: str  # the reference shows this id as a string, unlike every other id
    email: str
    role: str | None = None


class WorkspaceInvitationRead(Open):
    id: int
    email: str
    role: str | None = None
    workspace_id: int


class ApiKey(Open):
    api_key: str


class RefreshKey(Open):
    refresh_key: int


class RefreshStatus(Open):
    """``processing`` or ``completed`` (200); a failed refresh is a 400 with ``message``."""

    status: str
    message: str | None = None


class RecordsExport(Open):
    status: str
    urls: list[str]


class RecordCount(Open):
    record_count: int


class Accepted(Open):
    status: str
    messages: int


class Capability(Open):
    """What a management link allows (``/embedded/*_wizard``)."""


Deleted = StatusOnly

__all__ = [
    "Envelope",
    "ListEnvelope",
    "Deleted",
    "Json",
]


class ManagedObjectRead(Open):
    kind: str
    id: int
    slug: str
    managed_by: str
