"""What sources and destinations share: credentials, connection tests, type catalogues."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from reflow.connectors import outbound
from reflow.connectors.base import (
    ConnectorConfig,
    DestinationConnector,
    SourceConnector,
    TestStep,
    secret_field_names,
)
from reflow.crypto import Vault
from reflow.db.repo import Page, PageParams, paginate
from reflow.db.tables import Connection, Destination, Source, Sync, utcnow
from reflow.errors import BadRequest, Conflict

ConnectorClass = type[SourceConnector] | type[DestinationConnector]
C = TypeVar("C", type[SourceConnector], type[DestinationConnector])


def connector_class(catalogue: Mapping[str, C], type_name: Any, field: str) -> C:
    if not isinstance(type_name, str) or not type_name:
        raise BadRequest(f"{field} is required and must be a string")
    cls = catalogue.get(type_name)
    if cls is None:
        valid = ", ".join(sorted(catalogue))
        raise BadRequest(f"{field} {type_name!r} is not a known type; valid types: {valid}")
    return cls


def require_object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{field} must be an object")
    return value


def validation_message(exc: ValidationError, prefix: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{prefix}.{loc}: {err['msg']}" if loc else f"{prefix}: {err['msg']}")
    return "; ".join(parts)


def connection_object(body: dict[str, Any], field: str) -> dict[str, Any]:
    """The ``connection`` / ``service_connection`` object of a create or update body."""
    conn = body.get(field)
    if not isinstance(conn, dict):
        raise BadRequest(f"{field} is required and must be an object")
    if "credentials" in conn and not isinstance(conn["credentials"], dict):
        raise BadRequest(f"{field}.credentials must be an object")
    return conn


def list_in_workspace(
    session: Session,
    model: type[Source] | type[Destination],
    *,
    workspace_id: int,
    params: PageParams,
) -> Page:
    stmt = select(model).where(model.workspace_id == workspace_id)
    return paginate(session, stmt, params, model.id)


def ensure_unused(session: Session, row: Source | Destination, *, advice: str) -> None:
    """A connection that syncs read from or write to cannot be deleted (409)."""
    column = Sync.source_id if isinstance(row, Source) else Sync.destination_id
    used_by = session.scalars(select(Sync.id).where(column == row.id)).all()
    if used_by:
        ids = ", ".join(str(i) for i in used_by)
        kind = "source" if isinstance(row, Source) else "destination"
        raise Conflict(f"{kind} {row.id} is used by syncs {ids}; {advice}")


def require_credentials(credentials: dict[str, Any] | None, field: str) -> dict[str, Any]:
    if credentials is None:
        raise BadRequest(f"{field}.credentials is required")
    return credentials


def reject_type_change(row: Connection, changes: dict[str, Any], message: str) -> None:
    if changes.get("type") not in (None, row.type):
        raise BadRequest(message)


def save_credentials(
    row: Connection, *, cls: ConnectorClass, credentials: dict[str, Any], vault: Vault, merge: bool
) -> ConnectorConfig | None:
    """Store credentials (see ``apply_credentials``) and, when they validate, run the
    connection test; returns the validated config, if any."""
    config = apply_credentials(row, cls=cls, credentials=credentials, vault=vault, merge=merge)
    if config is not None:
        run_test(row, cls=cls, config=config, vault=vault)
    return config


def apply_credentials(
    row: Connection, *, cls: ConnectorClass, credentials: dict[str, Any], vault: Vault, merge: bool
) -> ConnectorConfig | None:
    """Store credentials encrypted (merging into the stored ones on update) and test
    them. Credentials that do not validate are saved too, with a failed test that
    names the problem, so the user can fix them."""
    if merge and row.credentials_encrypted:
        credentials = {**vault.decrypt(row.credentials_encrypted), **credentials}
    row.credentials_encrypted = vault.encrypt(credentials)
    config_model: type[ConnectorConfig] = cls.config_model
    secrets = secret_field_names(config_model)
    try:
        config = config_model.model_validate(credentials)
    except ValidationError as exc:
        _refuse_non_http_urls(exc)
        row.connection_details = _known_public(config_model, credentials, secrets)
        message = f"{cls.label} connection settings are invalid: " + validation_message(
            exc, "credentials"
        )
        record_test(row, [TestStep("Verify connectivity", "failed", message)])
        return None
    row.connection_details = config.connection_details()
    return config


def _refuse_non_http_urls(exc: ValidationError) -> None:
    """A URL that is not http(s) is refused outright (400), not saved with a failed test:
    a gopher:// or file:// target must never be stored and retried."""
    bad = [e for e in exc.errors() if e["type"] == "outbound_url"]
    if bad:
        raise BadRequest("; ".join(
            f"credentials.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in bad
        ))


def _known_public(
    config_model: type[ConnectorConfig], credentials: dict[str, Any], secrets: set[str]
) -> dict[str, Any]:
    """Keys of credentials that failed validation that are safe to echo: only declared,
    non-secret fields under their own name, so a secret sent under an alias or an
    unknown key is never returned."""
    public = set(config_model.model_fields) - secrets
    return {k: v for k, v in credentials.items() if k in public}


def run_test(
    row: Connection, *, cls: ConnectorClass, config: ConnectorConfig, vault: Vault | None = None
) -> None:
    """Run the connector's test. An address the outbound policy refuses is a 400 naming
    the address and the setting; the connection is not saved."""
    connector = cls(config)
    attach_hooks(connector, row, vault)
    with outbound.watching() as refused:
        try:
            steps = connector.test_connection()
        except Exception as exc:  # a connector bug must not lose the user's input
            steps = [TestStep("Verify connectivity", "failed", str(exc) or type(exc).__name__)]
        finally:
            connector.close()
    if refused:
        raise BadRequest(f"credentials: {refused[0]}")
    record_test(row, steps)


def record_test(row: Connection, steps: list[TestStep]) -> None:
    row.last_test_results = {
        "steps": [
            {"step": s.step, "status": s.status, "error": {"message": s.message}} for s in steps
        ]
    }
    row.last_test_succeeded = all(s.status != "failed" for s in steps)
    row.last_tested_at = utcnow()


def build_connector(row: Connection, *, catalogue: Mapping[str, Any], vault: Vault) -> Any:
    """The connector for a stored connection, credentials decrypted only here."""
    cls = catalogue[row.type]
    config = cls.config_model.model_validate(vault.decrypt(row.credentials_encrypted))
    connector = cls(config)
    attach_hooks(connector, row, vault)
    return connector


def attach_hooks(connector: Any, row: Connection, vault: Vault | None) -> None:
    """Give a connector that changes its own connection (a SaaS connector renewing an
    OAuth token, or finding it revoked) the means to record it: on the row while it
    is in a session (its unit of work commits it), else in a short transaction of its
    own (a run's connector outlives the session that built it)."""
    if not hasattr(connector, "attach_hooks"):
        return
    from reflow.connectors.saas.hooks import ConnectionHooks

    session = object_session(row)
    bind = session.get_bind() if session is not None else None

    row_id = getattr(row, "id", None)

    def change(mutate: Any) -> None:
        if object_session(row) is not None or bind is None or row_id is None:
            mutate(row)
            return
        with Session(bind) as own, own.begin():
            fresh = own.get(type(row), row_id)
            if fresh is not None:
                mutate(fresh)

    def save_credentials(updates: Mapping[str, Any]) -> None:
        def mutate(target: Connection) -> None:
            if vault is not None and target.credentials_encrypted:
                stored = vault.decrypt(target.credentials_encrypted)
                target.credentials_encrypted = vault.encrypt({**stored, **updates})
        change(mutate)

    def mark_failed(message: str) -> None:
        change(lambda target: record_test(
            target, [TestStep("Verify connectivity", "failed", message)]))

    connector.attach_hooks(ConnectionHooks(save_credentials, mark_failed))


def configuration_fields(config_model: type[ConnectorConfig]) -> dict[str, Any]:
    """The Census ``configuration_fields`` shape, derived from the JSON Schema."""
    schema = config_model.model_json_schema()
    required = set(schema.get("required", []))
    secrets = secret_field_names(config_model)
    fields = []
    for key, prop in schema.get("properties", {}).items():
        field: dict[str, Any] = {
            "id": key,
            "rules": ["required"] if key in required else [],
            "label": prop.get("title", key),
            "type": _json_type(prop),
            "is_password_type_field": key in secrets,
            "input_type": "password" if key in secrets else "textbox",
            "hint": prop.get("description"),
        }
        if "default" in prop:
            field["default"] = prop["default"]
        if "enum" in prop:
            field["possible_values"] = prop["enum"]
        fields.append(field)
    return {"fields": fields, "json_schema": schema}


def _json_type(prop: dict[str, Any]) -> str:
    if "type" in prop:
        return {"integer": "integer", "number": "float", "boolean": "boolean"}.get(
            prop["type"], "string"
        )
    for option in prop.get("anyOf", []):
        if option.get("type") not in (None, "null"):
            return _json_type(option)
    return "string"


def default_name(
    cls: ConnectorClass, config: ConnectorConfig | None, credentials: dict[str, Any]
) -> str:
    ident = config.identifying_value() if config else None
    ident = ident or credentials.get("hostname") or credentials.get("account")
    return f"{cls.label} - {ident}" if ident else cls.label
