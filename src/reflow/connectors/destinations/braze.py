"""Braze: user attributes, custom events and purchases through ``/users/track``; user
deletion through ``/users/delete``; on the SaaS kit.

Objects:

* ``user`` — upsert (attributes), update (``_update_existing_only``: users Braze does
  not know are left alone), mirror and delete. The sync key identifies the user: a key
  named ``email`` or ``user_alias`` identifies by that (a user alias's name, with the
  connection's ``alias_label``), any other key's value is the user's ``external_id``.
  A null clears the attribute (Braze removes it) unless the mapping says
  ``sync_null_values: false``. Any custom attribute may be mapped.
* ``event`` — append: ``name`` (required), ``time`` (the run's time when unmapped),
  ``app_id``; the user by ``external_id``, ``email`` or ``user_alias``; every other
  mapped field goes into the event's ``properties``.
* ``purchase`` — append: ``product_id``, ``price`` (required), ``currency`` (``USD``
  when unmapped), ``quantity``, ``time``; the rest into ``properties``.

Braze's limits: 75 objects a /users/track request (attributes, events and purchases
together), 3,000 requests per 3 s; 50 users a /users/delete request, 20,000 a minute.
Objects Braze refuses come back as "minor errors" naming their array and index: each
becomes a rejected record with Braze's words.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from reflow.connectors.base import (
    Action,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationField,
    DestinationObject,
    RejectedRecord,
)
from reflow.connectors.errors import BatchRejected
from reflow.connectors.saas.auth import ApiKeyAuth, Auth
from reflow.connectors.saas.client import retry_after_seconds
from reflow.connectors.saas.connector import Call, SaasDestination, SaasWriter, Vendor, chunks
from reflow.connectors.saas.ratelimit import Limit

PRODUCTION_URL = "https://rest.iad-01.braze.com"
MAX_DELETE = 50
IDENTIFIERS = ("external_id", "email", "user_alias")
STANDARD_ATTRIBUTES = ("first_name", "last_name", "phone", "country", "home_city", "language",
                       "gender", "dob", "time_zone", "email_subscribe", "push_subscribe")


class BrazeConfig(ConnectorConfig):
    api_key: SecretStr = Field(
        title="REST API key",
        description="Settings > APIs and Identifiers > API Keys; needs users.track and "
        "users.delete.")
    rest_endpoint: str | None = Field(
        None, title="REST endpoint",
        description=f"Your instance's REST endpoint (e.g. https://rest.fra-01.braze.eu); "
        f"default {PRODUCTION_URL} (US-01).")
    alias_label: str = Field(
        "reflow", title="User alias label",
        description="The alias_label of users identified by user_alias.")

    def identifying_value(self) -> str | None:
        return self.rest_endpoint or PRODUCTION_URL


def _identifier(name: str) -> DestinationField:
    return DestinationField(name, name.replace("_", " ").title(), "string", identifier=True)


def _plain(name: str, type_: str = "string", *, required: bool = False) -> DestinationField:
    return DestinationField(name, name.replace("_", " ").title(), type_, required=required)


OBJECTS = (
    DestinationObject("user", "User", ("upsert", "update", "mirror", "delete"),
                      tuple(_identifier(n) for n in IDENTIFIERS)
                      + tuple(_plain(n) for n in STANDARD_ATTRIBUTES),
                      allow_custom_fields=True),
    DestinationObject("event", "Custom event", ("append",),
                      tuple(_plain(n) for n in IDENTIFIERS)
                      + (_plain("name", required=True), _plain("time", "date_time"),
                         _plain("app_id")), allow_custom_fields=True),
    DestinationObject("purchase", "Purchase", ("append",),
                      tuple(_plain(n) for n in IDENTIFIERS)
                      + (_plain("product_id", required=True), _plain("price", "float",
                                                                     required=True),
                         _plain("currency"), _plain("quantity", "integer"),
                         _plain("time", "date_time"), _plain("app_id")),
                      allow_custom_fields=True),
)
_OWN_FIELDS = {"event": {"name", "time", "app_id"},
               "purchase": {"product_id", "price", "currency", "quantity", "time", "app_id"}}
_ARRAYS = {"user": "attributes", "event": "events", "purchase": "purchases"}


class BrazeWriter(SaasWriter):
    destination: BrazeDestination

    def calls(self, records: list[dict[str, Any]], action: Action) -> Iterator[Call | Any]:
        if action != "delete":
            yield from super().calls(records, action)
            return
        for indices in chunks(list(range(len(records))), MAX_DELETE):
            yield self._delete_call(records, indices)

    def call_for(self, records: list[dict[str, Any]], indices: list[int], action: Action) -> Call:
        array = _ARRAYS[self.object.full_name]
        build = self._attributes if array == "attributes" else self._occurrence
        body = {array: [build(records[i], action) for i in indices]}
        return Call("POST", "/users/track", indices, json=body, context=array)

    def _user(self, record: dict[str, Any], key: str) -> dict[str, Any]:
        if key == "user_alias":
            return {"user_alias": {"alias_name": str(record[key]),
                                   "alias_label": self.destination.config.alias_label}}
        if key == "email":
            return {"email": record[key]}
        return {"external_id": str(record[key])}

    def _attributes(self, record: dict[str, Any], action: Action) -> dict[str, Any]:
        key = self.ctx.key_field
        out = self._user(record, key)
        for name, value in record.items():
            if name != key and not (value is None and name in self.ctx.keep_on_null):
                out[name] = value
        if action == "update":
            out["_update_existing_only"] = True
        return out

    def _occurrence(self, record: dict[str, Any], _: Action) -> dict[str, Any]:
        """An event or a purchase: the user, Braze's own fields, the rest as properties."""
        key = next((k for k in IDENTIFIERS if record.get(k) is not None), None)
        out = self._user(record, key) if key else {}
        own = _OWN_FIELDS[self.object.full_name]
        out.update({k: v for k, v in record.items() if k in own and v is not None})
        out.setdefault("time", _now())
        if self.object.full_name == "purchase":
            out.setdefault("currency", "USD")
        props = {k: v for k, v in record.items() if k not in own and k not in IDENTIFIERS}
        if props:
            out["properties"] = props
        return out

    def _delete_call(self, records: list[dict[str, Any]], indices: list[int]) -> Call:
        key = self.ctx.key_field
        values = [self._user(records[i], key) for i in indices]
        if key == "user_alias":
            body: dict[str, Any] = {"user_aliases": [v["user_alias"] for v in values]}
        elif key == "email":
            body = {"email_addresses": [v["email"] for v in values]}
        else:
            body = {"external_ids": [v["external_id"] for v in values]}
        return Call("POST", "/users/delete", indices, json=body, context="delete")

    def results(self, call: Call, response: httpx.Response) -> list[RejectedRecord]:
        """Braze's minor errors name the object (array and index) it refused."""
        body = _json(response)
        errors = body.get("errors")
        errors = errors if isinstance(errors, list) else []
        named = [e for e in errors if isinstance(e, dict) and e.get("input_array") == call.context
                 and isinstance(e.get("index"), int) and 0 <= e["index"] < len(call.indices)]
        if response.is_success or (response.status_code == 400 and named):
            return [RejectedRecord(call.indices[e["index"]], f"Braze: {e.get('type')}")
                    for e in named]
        if response.status_code == 400:
            raise BatchRejected(self.destination.error_message(response))
        return super().results(call, response)

    def refuse(self, record: dict[str, Any], action: Action) -> str | None:
        if self.object.full_name != "user" and not any(record.get(k) is not None
                                                       for k in IDENTIFIERS):
            return "Braze needs external_id, email or user_alias to know whose this is"
        return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BrazeDestination(SaasDestination):
    service_name = "braze"
    label = "Braze"
    documentation_slug = "braze"
    config_model: ClassVar[type[ConnectorConfig]] = BrazeConfig
    vendor = Vendor(
        "Braze", PRODUCTION_URL,
        limits=(Limit(3000, 3.0, "users_track", paths=("/users/track",)),
                Limit(20_000, 60.0, "users_delete", paths=("/users/delete",))),
        batch_size=75, concurrency=8)
    capabilities = DestinationCapabilities(
        operations=("upsert", "update", "mirror", "delete", "append"), batch_size=7_500,
        sync_null_values=True)
    writer_class = BrazeWriter
    config: BrazeConfig

    def base_url(self) -> str:
        return (self.config.rest_endpoint or PRODUCTION_URL).rstrip("/")

    def make_auth(self, http: httpx.Client) -> Auth:
        return ApiKeyAuth(self.config.api_key.get_secret_value())

    def verify(self) -> None:
        # Braze has no "who am I": an empty /users/track is authenticated and changes nothing.
        self.client.checked("POST", "/users/track", json={"attributes": []})

    def load_objects(self) -> list[DestinationObject]:
        return list(OBJECTS)

    def error_message(self, response: httpx.Response) -> str:
        message = _json(response).get("message")
        if message:
            return f"Braze: {message}"
        return f"Braze answered HTTP {response.status_code}: {response.text[:500]}"

    def retry_after(self, response: httpx.Response) -> float | None:
        """Braze says when its window resets (``X-RateLimit-Reset``, Unix seconds)."""
        reset = response.headers.get("X-RateLimit-Reset")
        if reset and reset.isdigit():
            return max(0.0, int(reset) - time.time())
        return retry_after_seconds(response.headers.get("Retry-After"))
