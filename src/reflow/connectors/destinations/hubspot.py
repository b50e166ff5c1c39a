"""HubSpot CRM: contacts, companies, deals, tickets and custom objects, on the SaaS kit.

Records are written with the CRM v3 batch endpoints, 100 inputs a request: ``upsert``
by the sync key as ``idProperty`` (``email``, or any property with unique values),
``update`` (a record HubSpot does not have is rejected with its ``OBJECT_NOT_FOUND``
message), ``insert`` (existing keys are read first and left alone), ``delete`` and
``mirror`` (keys are read to HubSpot ids, then archived). With ``hs_object_id`` as the
key a record can only be updated: HubSpot assigns ids itself. Values are sent as
HubSpot's strings; a null clears the property (HubSpot clears with ""), unless the
mapping has ``sync_null_values: false``.

Objects and properties come from the schemas and properties APIs; identifiers are
``hs_object_id``, ``email`` and every property with ``hasUniqueValue``. ``create_field``
adds a property (the "sync all properties" creation).

Limits: HubSpot documents 100 requests per 10 s (rolling) for Free/Starter private
apps, more on higher tiers; the connector paces by the ``X-HubSpot-RateLimit-Max`` /
``-Interval-Milliseconds`` headers of the account once it has seen them. A 429 with
``policyName: DAILY`` means the daily quota is spent: the run fails and the next one
sends what was not acknowledged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import cached_property
from typing import Any, ClassVar

import httpx
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, SecretStr, model_validator
from pydantic.json_schema import SkipJsonSchema

from reflow.connectors.base import (
    Action,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationField,
    DestinationObject,
    RejectedRecord,
)
from reflow.connectors.errors import TerminalError
from reflow.connectors.saas.auth import ApiKeyAuth, Auth, OAuthRefresh
from reflow.connectors.saas.connector import Call, SaasDestination, SaasWriter, Vendor
from reflow.connectors.saas.metadata import field_type, paginate
from reflow.connectors.saas.ratelimit import Limit, RateLimiter

PRODUCTION_URL = "https://api.hubapi.com"
STANDARD_OBJECTS = ("contacts", "companies", "deals", "tickets")
OPERATIONS = ("upsert", "update", "insert", "mirror", "delete")
#: Lookups HubSpot keeps as associations: (object, the lookup field it shows, target).
ASSOCIATIONS = (("contacts", "associated_company", "companies"),
                ("deals", "associated_company", "companies"),
                ("tickets", "associated_contact", "contacts"))
_TYPES = {"number": "float", "bool": "boolean", "enumeration": "string",
          "datetime": "date_time", "date": "date", "phone_number": "string"}
#: Reflow field type -> (HubSpot type, fieldType) of a created property.
_CREATED = {"integer": ("number", "number"), "float": ("number", "number"),
            "decimal": ("number", "number"), "boolean": ("bool", "booleancheckbox"),
            "date": ("date", "date"), "date_time": ("datetime", "date")}


class HubSpotConfig(ConnectorConfig):
    access_token: SecretStr | None = Field(
        None, title="Access token",
        description="A private app's access token (Settings > Integrations > Private Apps), "
        "with the crm.objects.*.write and crm.schemas.*.read scopes. Leave empty when using "
        "OAuth.")
    client_id: str | None = Field(None, title="OAuth client ID",
                                  description="The public app's client ID (OAuth).")
    client_secret: SecretStr | None = Field(None, title="OAuth client secret",
                                            description="The public app's client secret.")
    refresh_token: SecretStr | None = Field(
        None, title="OAuth refresh token",
        description="From the app's authorization; Reflow renews access tokens with it.")
    access_token_expires_at: SkipJsonSchema[float | None] = None
    base_url: str | None = Field(
        None, title="API URL",
        description=f"Default {PRODUCTION_URL}; another URL for a proxy or a test portal.")

    @model_validator(mode="after")
    def _one_way_in(self) -> HubSpotConfig:
        if self.refresh_token is None and self.access_token is None:
            raise ValueError("give access_token (private app) or client_id, client_secret "
                             "and refresh_token (OAuth)")
        if self.refresh_token is not None and not (self.client_id and self.client_secret):
            raise ValueError("OAuth needs client_id and client_secret with refresh_token")
        return self

    def identifying_value(self) -> str | None:
        return self.base_url or "api.hubapi.com"

    def connection_details(self) -> dict[str, Any]:
        # The renewed token's expiry is Reflow's bookkeeping, not a setting to show.
        details = super().connection_details()
        details.pop("access_token_expires_at", None)
        return details


class HubSpotWriter(SaasWriter):
    """One batch request per 100 records; deletes and inserts read the keys first."""

    destination: HubSpotDestination

    def calls(self, records: list[dict[str, Any]], action: Action) -> Iterator[Call | Any]:
        self._records = records  # follow-up requests (create, archive) are built from them
        if action == "insert" and self._by_id:
            for index in range(len(records)):
                yield RejectedRecord(index, "HubSpot assigns hs_object_id itself: create "
                                     "records keyed by email or a unique property")
            return
        yield from super().calls(records, action)

    @property
    def _by_id(self) -> bool:
        return self.ctx.key_field == "hs_object_id"

    def call_for(self, records: list[dict[str, Any]], indices: list[int], action: Action) -> Call:
        path = f"/crm/v3/objects/{self.object.full_name}/batch"
        if action in ("delete", "insert"):
            body: dict[str, Any] = {"inputs": [{"id": records[i][self.ctx.key_field]}
                                               for i in indices],
                                    "properties": sorted({"hs_object_id", self.ctx.key_field})}
            if not self._by_id:
                body["idProperty"] = self.ctx.key_field
            return Call("POST", f"{path}/read", indices, json=body, context=action)
        # Upsert by hs_object_id is an update: HubSpot assigns ids itself.
        endpoint = "update" if action == "update" or self._by_id else "upsert"
        key, props = self.ctx.key_field, self._props
        if self._by_id:
            inputs = [{"id": records[i][key], "properties": props[i]} for i in indices]
        else:
            inputs = [{"id": records[i][key], "idProperty": key, "properties": props[i]}
                      for i in indices]
        return Call("POST", f"{path}/{endpoint}", indices, json={"inputs": inputs},
                    context=endpoint)

    def records(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """Every value as HubSpot's text, converted a column at a time; a null is ""
        (HubSpot's way to clear a property) except where the mapping keeps the value."""
        columns = []
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            text = _text_column(column)
            if name not in self.ctx.keep_on_null and name not in self.ctx.lookups:
                text = pc.fill_null(text, "")
            columns.append(text)
        converted = pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
        # Each record's properties as one dict, built by Arrow; a null left in a column
        # whose mapping keeps the value on null is left out of the record.
        names = [n for n in batch.schema.names if n not in self._skip]
        self._props: list[dict[str, str]] = converted.select(names).to_pylist()
        if self.ctx.keep_on_null:
            self._props = [{k: v for k, v in p.items() if v is not None} for p in self._props]
        return converted.to_pylist()

    @cached_property
    def _skip(self) -> frozenset[str]:
        """Fields that are not properties: the key (sent as the id) and the lookups."""
        return frozenset({self.ctx.key_field, *self.ctx.lookups})

    def results(self, call: Call, response: httpx.Response) -> list[RejectedRecord]:
        if response.status_code not in (200, 201, 207):
            return super().results(call, response)
        if call.context in ("delete", "insert"):
            return self._after_read(call, response)
        rejected = [] if call.context == "create" else self._missing(call, response)
        if self.ctx.lookups:
            rejected += self._associate(call, response, {r.index for r in rejected})
        return rejected

    # -- lookups: associations ---------------------------------------------------------------
    def _associate(self, call: Call, response: httpx.Response, failed: set[int]
                   ) -> list[RejectedRecord]:
        """Each lookup field's value names a parent record by its identifier: read the
        parents' ids, then associate (v4 default association) the written records."""
        key = self.ctx.key_field
        written = {}
        for result in response.json().get("results") or []:
            value = result["id"] if self._by_id else (result.get("properties") or {}).get(key)
            if value is not None:
                written[_norm(key, value)] = str(result["id"])
        rejected: list[RejectedRecord] = []
        for name, (target, target_field) in self.ctx.lookups.items():
            records = self._records
            wanted = [(i, written.get(_norm(key, records[i][key])), records[i].get(name))
                      for i in call.indices if i not in failed]
            wanted = [(i, rid, v) for i, rid, v in wanted if rid and v is not None]
            if wanted:
                rejected += self._link(target, target_field, wanted)
        return rejected

    def _link(self, target: str, target_field: str, wanted: list[tuple[int, str | None, Any]]
              ) -> list[RejectedRecord]:
        parents = self._parents(target, target_field, {_text(v) for _, _, v in wanted})
        rejected, links, linked = [], [], []
        for index, rid, value in wanted:
            parent = parents.get(_norm(target_field, value))
            if parent is None:
                rejected.append(RejectedRecord(index, f"HubSpot has no {target} record with "
                                               f"{target_field} = {_text(value)!r} to associate"))
            else:
                links.append({"from": {"id": rid}, "to": {"id": parent}})
                linked.append(index)
        if links:
            path = (f"/crm/v4/associations/{self.object.full_name}/{target}"
                    "/batch/associate/default")
            answer = self.request(Call("POST", path, linked, json={"inputs": links}))
            if not answer.is_success:
                reason = self.destination.error_message(answer)
                rejected += [RejectedRecord(i, reason) for i in linked]
        return rejected

    def _parents(self, target: str, target_field: str, values: set[str]) -> dict[str, str]:
        """Identifier value -> HubSpot id of the ``target`` records that exist."""
        found: dict[str, str] = {}
        ordered = sorted(values)
        for start in range(0, len(ordered), self.vendor.batch_size):
            body: dict[str, Any] = {"inputs": [{"id": v} for v in
                                               ordered[start:start + self.vendor.batch_size]],
                                    "properties": [target_field]}
            if target_field != "hs_object_id":
                body["idProperty"] = target_field
            answer = self.request(Call("POST", f"/crm/v3/objects/{target}/batch/read", [],
                                       json=body))
            if answer.status_code not in (200, 207):
                raise TerminalError(self.destination.error_message(answer))
            for result in answer.json().get("results") or []:
                value = (result.get("properties") or {}).get(target_field) or result["id"]
                found[_norm(target_field, value)] = str(result["id"])
        return found

    def _missing(self, call: Call, response: httpx.Response) -> list[RejectedRecord]:
        """207: the inputs HubSpot could not find, rejected with its message."""
        missing: dict[str, str] = {}
        for error in response.json().get("errors") or []:
            for ident in (error.get("context") or {}).get("ids") or []:
                missing[str(ident)] = f"HubSpot: {error.get('category')}: {error.get('message')}"
        inputs = call.json["inputs"]
        return [RejectedRecord(i, missing[str(item["id"])])
                for i, item in zip(call.indices, inputs, strict=True)
                if str(item["id"]) in missing]

    def _after_read(self, call: Call, response: httpx.Response) -> list[RejectedRecord]:
        """The keys, read to HubSpot ids: archive them (delete), or create the records
        HubSpot does not have (insert never overwrites)."""
        key = call.json.get("idProperty") or "hs_object_id"
        found = {_norm(key, (r.get("properties") or {}).get(key) or r["id"]): str(r["id"])
                 for r in response.json().get("results") or []}
        ids = [found.get(_norm(key, item["id"])) for item in call.json["inputs"]]
        path = call.path.removesuffix("/read")
        if call.context == "delete":
            targets = [{"id": rid} for rid in ids if rid]
            if targets:  # what HubSpot does not have is already gone
                archived = self.request(Call("POST", f"{path}/archive", call.indices,
                                             json={"inputs": targets}))
                if not archived.is_success:
                    return super().results(call, archived)
            return []
        new = [i for i, rid in zip(call.indices, ids, strict=True) if rid is None]
        if not new:
            return []
        return self.send(self._create_call(path, new), self._records, "insert")

    def _create_call(self, path: str, indices: list[int]) -> Call:
        key = self.ctx.key_field
        inputs = [{"properties": {**self._props[i], key: self._records[i][key]}}
                  for i in indices]
        return Call("POST", f"{path}/create", indices, json={"inputs": inputs}, context="create")


def _text_column(column: pa.Array) -> pa.Array:
    """A column as HubSpot's strings: numbers and booleans by Arrow's cast (1.0 -> "1",
    True -> "true"); anything else value by value."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.cast(column, pa.string())
    if pa.types.is_floating(kind):
        return pa.array([None if v is None else _text(v) for v in column.to_pylist()],
                        pa.string())
    return pa.array([None if v is None else _text(v) for v in column.to_pylist()], pa.string())


def _norm(key: str, value: Any) -> str:
    text = _text(value)
    return text.lower() if key == "email" else text


def _text(value: Any) -> str:
    """A value as HubSpot's property string ("" clears the property)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


class HubSpotDestination(SaasDestination):
    service_name = "hubspot"
    label = "HubSpot"
    documentation_slug = "hubspot"
    config_model: ClassVar[type[ConnectorConfig]] = HubSpotConfig
    vendor = Vendor("HubSpot", PRODUCTION_URL, limits=(Limit(100, 10.0, "ten_secondly"),),
                    batch_size=100, concurrency=8)
    # Large writes: the requests of one write are paced back to back, and the pause
    # between two writes (snapshot commit, progress) is time the limit goes unused.
    capabilities = DestinationCapabilities(operations=OPERATIONS, batch_size=20_000,
                                           rate_limit_per_second=10.0, lookups=True,
                                           sync_null_values=True)
    writer_class = HubSpotWriter
    config: HubSpotConfig

    def make_auth(self, http: httpx.Client) -> Auth:
        c = self.config
        if c.refresh_token is not None and c.client_secret is not None:
            return OAuthRefresh(
                vendor="HubSpot", http=http, token_url=f"{self.base_url()}/oauth/v1/token",
                client_id=c.client_id or "", client_secret=c.client_secret.get_secret_value(),
                refresh_token=c.refresh_token.get_secret_value(),
                access_token=c.access_token.get_secret_value() if c.access_token else None,
                expires_at=c.access_token_expires_at, hooks=self.connection_hooks())
        assert c.access_token is not None
        return ApiKeyAuth(c.access_token.get_secret_value())

    def account_identity(self) -> str:
        c = self.config
        if c.refresh_token is not None:
            return f"oauth:{c.client_id}:{c.refresh_token.get_secret_value()}"
        return c.access_token.get_secret_value() if c.access_token else ""

    def verify(self) -> None:
        self.client.checked("GET", "/crm/v3/objects/contacts", params={"limit": 1})

    # -- metadata ------------------------------------------------------------------------
    def load_objects(self) -> list[DestinationObject]:
        objects = [self._object(name, name.title(), self._properties(name))
                   for name in STANDARD_OBJECTS]
        for schema in self._schemas():
            objects.append(self._object(schema["name"], schema.get("labels", {}).get(
                "plural") or schema["name"], schema.get("properties") or []))
        return objects

    def _schemas(self) -> Iterator[dict[str, Any]]:
        return paginate(
            lambda after: self.client.checked("GET", "/crm/v3/schemas",
                                              params={"after": after} if after else None),
            items=lambda body: body.get("results") or [],
            next_cursor=lambda body: ((body.get("paging") or {}).get("next") or {}).get("after"))

    def _properties(self, name: str) -> list[dict[str, Any]]:
        body = self.client.checked("GET", f"/crm/v3/properties/{name}").json()
        return list(body.get("results") or [])

    def _object(self, name: str, label: str, props: list[dict[str, Any]]) -> DestinationObject:
        fields = tuple(_field(p) for p in props if not p.get("hidden"))
        fields += tuple(DestinationField(field, f"Associated {target} (association)", "string",
                                         lookup_object=target)
                        for source, field, target in ASSOCIATIONS if source == name)
        return DestinationObject(name, label, OPERATIONS, fields)

    def create_field(self, object_name: str, name: str, type: str) -> DestinationField:
        hs_type, field_kind = _CREATED.get(type, ("string", "text"))
        spec = {"name": name, "label": name, "type": hs_type, "fieldType": field_kind,
                "groupName": f"{object_name.rstrip('s')}information"}
        response = self.client.request("POST", f"/crm/v3/properties/{object_name}", json=spec)
        if response.status_code >= 400:
            raise TerminalError(self.error_message(response))
        self.metadata.forget()  # the next list_objects shows the new property
        return _field(response.json())

    # -- HubSpot's answers ---------------------------------------------------------------
    def error_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return f"HubSpot answered HTTP {response.status_code}: {response.text[:500]}"
        if isinstance(body, dict) and body.get("message"):
            category = body.get("category") or body.get("status")
            prefix = f"{category}: " if category and category != "error" else ""
            return f"HubSpot: {prefix}{body['message']}"
        return f"HubSpot answered HTTP {response.status_code}: {response.text[:500]}"

    def quota_exhausted(self, response: httpx.Response) -> bool:
        try:
            return bool(response.json().get("policyName") == "DAILY")
        except (ValueError, AttributeError):
            return False

    def observe(self, response: httpx.Response, limiter: RateLimiter) -> None:
        """Pace by the account's own window (higher tiers allow 150 or 190 per 10 s)."""
        top = response.headers.get("X-HubSpot-RateLimit-Max")
        window = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if top and window and top.isdigit() and window.isdigit():
            limiter.adopt("ten_secondly", int(top), int(window) / 1000)


def _field(p: dict[str, Any]) -> DestinationField:
    read_only = bool((p.get("modificationMetadata") or {}).get("readOnlyValue"))
    name = str(p["name"])
    unique = bool(p.get("hasUniqueValue")) or name in ("email", "hs_object_id")
    return DestinationField(
        full_name=name, label=str(p.get("label") or name),
        type=field_type(p.get("type"), _TYPES),
        createable=not read_only, updateable=not read_only,
        required=False, identifier=unique)

