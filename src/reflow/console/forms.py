"""Connection forms generated from a connector's credential JSON Schema (the schema
the source/destination type endpoints serve), and mapping a service's error message
to the form field it names."""

from __future__ import annotations

import json
import re
from typing import Any

from reflow.errors import BadRequest
from reflow.services import connections

PREFIX = "credentials."
#: The field a message starts with: "credentials.path: Field required", "query: ...",
#: "schedule_hour must be ...", "emails[0] must be an email address".
_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]]*)(?::| (?:must|is|are|cannot|needs|does|has)\b)")


def credential_fields(config_model: type) -> list[dict[str, Any]]:
    """``configuration_fields`` plus ``json`` (objects and arrays are typed as JSON)."""
    config = connections.configuration_fields(config_model)  # type: ignore[arg-type]
    props = config["json_schema"].get("properties", {})
    for field in config["fields"]:
        field["json"] = _json_kind(props.get(field["id"], {}))
        field["input_name"] = PREFIX + field["id"]
    return config["fields"]


def _json_kind(prop: dict[str, Any]) -> bool:
    kinds = {prop.get("type")} | {o.get("type") for o in prop.get("anyOf", [])}
    return bool(kinds & {"object", "array"})


def shown_value(field: dict[str, Any], current: Any) -> str:
    """What a non-secret input shows: the stored value, else the schema default."""
    if field["is_password_type_field"]:
        return ""  # secrets are never echoed
    value = current if current is not None else field.get("default")
    if value is None:
        return ""
    if isinstance(value, bool):
        return json.dumps(value)
    return json.dumps(value) if field["json"] else str(value)


def parse_credentials(fields: list[dict[str, Any]], form: dict[str, str]) -> dict[str, Any]:
    """Submitted values by field id; a blank input is unset (on edit: keep the stored)."""
    out: dict[str, Any] = {}
    for field in fields:
        raw = form.get(PREFIX + field["id"], "").strip()
        if not raw:
            continue
        if field["type"] == "boolean":
            out[field["id"]] = raw == "true"
        elif field["json"]:
            try:
                out[field["id"]] = json.loads(raw)
            except json.JSONDecodeError:
                raise BadRequest(f"credentials.{field['id']}: must be valid JSON") from None
        else:
            out[field["id"]] = raw
    return out


def field_errors(message: str, known: set[str], fallback: str = "form") -> dict[str, str]:
    """Split a service message (``a: ...; b: ...``) into errors by field name; a part
    naming no known field goes to ``fallback``, shown at the top of the form."""
    errors: dict[str, str] = {}
    for part in _parts(message):
        match = _FIELD.match(part)
        names = [n for n in re.split(r"[.\[\]]+", match.group(1)) if n] if match else []
        key = next((n for n in reversed(names) if n in known), fallback)
        errors[key] = f"{errors[key]}; {part}" if key in errors else part
    return errors


def _parts(message: str) -> list[str]:
    # "X connection settings are invalid: credentials.a: ...; credentials.b: ..."
    head, sep, rest = message.partition(" are invalid: ")
    body = rest if sep else message
    return [p.strip() for p in body.split("; ") if p.strip()]


def test_errors(steps: list[dict[str, Any]], known: set[str]) -> dict[str, str]:
    """A failed connection test's messages, placed next to the fields they name."""
    errors: dict[str, str] = {}
    for step in steps:
        if step.get("status") == "failed":
            message = (step.get("error") or {}).get("message") or step.get("step", "failed")
            for key, value in field_errors(message, known).items():
                errors[key] = f"{errors[key]}; {value}" if key in errors else value
    return errors
