"""Destination types a workspace can use: the built-ins plus its own custom types
(``POST /connectors``), each a JSON-RPC endpoint speaking the Custom Destination API."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from reflow.connectors import registry
from reflow.connectors.base import DestinationConnector
from reflow.connectors.destinations.custom_api import check_url, define_custom_type
from reflow.crypto import Vault
from reflow.db.tables import Destination
from reflow.db.tables_destinations import CustomDestinationType
from reflow.errors import BadRequest, Conflict

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_CONFIG_TYPES = ("string", "boolean", "integer", "float")


def catalogue(session: Session, *, workspace_id: int, vault: Vault) -> dict[str, type]:
    """Every destination type of the workspace, keyed by ``service_name``."""
    rows = session.scalars(
        select(CustomDestinationType)
        .where(CustomDestinationType.workspace_id == workspace_id)
        .order_by(CustomDestinationType.id)
    ).all()
    return registry.destination_catalogue({r.service_name: connector_class(r, vault) for r in rows})


def class_for(destination: Destination, *, vault: Vault) -> type[DestinationConnector] | None:
    """The connector class of a stored destination (built-in or its workspace's type)."""
    builtin = registry.destination_type(destination.type)
    if builtin is not None:
        return builtin
    session = object_session(destination)
    if session is None:
        return None
    row = session.scalar(
        select(CustomDestinationType).where(
            CustomDestinationType.workspace_id == destination.workspace_id,
            CustomDestinationType.service_name == destination.type,
        )
    )
    return connector_class(row, vault) if row is not None else None


def connector_class(row: CustomDestinationType, vault: Vault) -> type[DestinationConnector]:
    data = vault.decrypt(row.data_encrypted)
    return _cached_class(
        row.service_name,
        row.label,
        json.dumps(row.configuration_definition, sort_keys=True),
        json.dumps(data, sort_keys=True),
    )


@lru_cache(maxsize=256)
def _cached_class(
    service_name: str, label: str, definition: str, data: str
) -> type[DestinationConnector]:
    parsed = json.loads(data)
    return define_custom_type(
        service_name=service_name,
        label=label,
        configuration_definition=json.loads(definition),
        url=parsed["url"],
        headers=parsed.get("headers") or {},
    )


def register(
    session: Session, *, workspace_id: int, vault: Vault, body: dict[str, Any]
) -> CustomDestinationType:
    connector = body.get("connector")
    if not isinstance(connector, dict):
        raise BadRequest("connector is required and must be an object")
    service_name = _service_name(session, workspace_id, connector.get("service_name"))
    label = connector.get("label")
    if not isinstance(label, str) or not label.strip():
        raise BadRequest("connector.label is required and must be a non-empty string")
    icon_url = connector.get("icon_url")
    if icon_url is not None and not isinstance(icon_url, str):
        raise BadRequest("connector.icon_url must be a string")
    definition = _definition(connector.get("configuration_definition"))
    data = _data(connector.get("data"))
    row = CustomDestinationType(
        workspace_id=workspace_id,
        service_name=service_name,
        label=label.strip(),
        icon_url=icon_url,
        configuration_definition=definition,
        data_encrypted=vault.encrypt(data),
    )
    session.add(row)
    session.flush()
    return row


def _service_name(session: Session, workspace_id: int, value: Any) -> str:
    if not isinstance(value, str) or not _SERVICE_NAME.match(value):
        raise BadRequest(
            "connector.service_name is required: lowercase letters, digits and _,"
            " starting with a letter"
        )
    if value in registry.destination_types():
        raise Conflict(f"connector.service_name {value!r} is a built-in destination type")
    taken = session.scalar(
        select(CustomDestinationType.id).where(
            CustomDestinationType.workspace_id == workspace_id,
            CustomDestinationType.service_name == value,
        )
    )
    if taken is not None:
        raise Conflict(f"connector.service_name {value!r} already exists in this workspace")
    return value


def _definition(value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("connector.configuration_definition must be an object")
    out: dict[str, dict[str, Any]] = {}
    for key, item in value.items():
        where = f"connector.configuration_definition.{key}"
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise BadRequest(f"{where}: keys must be identifiers (letters, digits, _)")
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        kind = item.get("type", "string")
        if kind not in _CONFIG_TYPES:
            raise BadRequest(f"{where}.type must be one of {', '.join(_CONFIG_TYPES)}")
        for flag in ("user_editable", "secret", "required"):
            if flag in item and not isinstance(item[flag], bool):
                raise BadRequest(f"{where}.{flag} must be a boolean")
        if item.get("secret") and kind != "string":
            raise BadRequest(f"{where}.secret is only allowed on string fields")
        out[key] = {**item, "id": key, "type": kind}
    return out


def _data(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("connector.data is required and must be an object with url")
    url = value.get("url")
    try:
        check_url(url if isinstance(url, str) else "")
    except ValueError:
        raise BadRequest("connector.data.url must be an http:// or https:// URL") from None
    headers = value.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise BadRequest("connector.data.headers must be an object of strings")
    for name, template in headers.items():
        _check_template(template, f"connector.data.headers.{name}")
    return {"url": url, "headers": headers}


def _check_template(template: str, where: str) -> None:
    from liquid import parse
    from liquid.exceptions import LiquidError

    try:
        parse(template)
    except LiquidError as exc:
        raise BadRequest(f"{where} does not parse: {exc}") from exc
