"""Salesforce: standard and custom objects through the REST API.

Objects and fields come from ``describe``; records are identified by ``Id`` or by an
External ID field. Batches below the sync's ``bulk_threshold`` go through sObject
Collections (200 records a request, ``allOrNone=false``, per-record results); larger
ones through a Bulk API 2.0 ingest job (``_salesforce_bulk``). A mapping with
``lookup_object``/``lookup_field`` fills a reference field from the parent's external id
(``"Account": {"External_Id__c": "A-1"}``), which Salesforce resolves itself.

Authentication is the OAuth 2 refresh-token flow of a connected app: the access token is
renewed on a 401 (Salesforce's tokens carry no expiry) and handed to the service, with
the instance URL the token endpoint answered, to be stored encrypted. A refused refresh
token fails the connection with a message to reconnect.

Limits: Salesforce counts requests per org per 24 hours (``Sforce-Limit-Info:
api-usage=N/M``); once spent it answers 403 ``REQUEST_LIMIT_EXCEEDED``, which stops the
run (``QuotaExhausted``): what was acknowledged stays delivered, the rest is sent by the
next run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from reflow.connectors.base import (
    Action,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationField,
    DestinationObject,
    RejectedRecord,
    WriteResult,
)
from reflow.connectors.errors import ObjectNotFound, TerminalError
from reflow.connectors.saas.auth import Auth, OAuthRefresh
from reflow.connectors.saas.client import QuotaExhausted
from reflow.connectors.saas.connector import (
    Call,
    SaasDestination,
    SaasWriter,
    Vendor,
    chunks,
    json_records,
)
from reflow.connectors.saas.metadata import field_type

LOGIN_URL = "https://login.salesforce.com"
API_VERSION = "62.0"
#: sObject Collections' documented maximum.
COLLECTION_SIZE = 200
_OPERATIONS = ("upsert", "update", "insert", "mirror", "delete")


class SalesforceConfig(ConnectorConfig):
    instance_url: str | None = Field(
        None, title="Instance URL",
        description="Your org's My Domain URL (https://MyDomain.my.salesforce.com). Leave"
        " empty to use the one Salesforce returns with the access token.")
    login_url: str | None = Field(
        None, title="Login URL",
        description="Where tokens are renewed: https://login.salesforce.com (default),"
        " https://test.salesforce.com for sandboxes, or your My Domain URL.")
    client_id: str = Field(title="Consumer key", description="The connected app's consumer key.")
    client_secret: SecretStr = Field(title="Consumer secret",
                                     description="The connected app's consumer secret.")
    refresh_token: SecretStr = Field(
        title="Refresh token",
        description="From the connected app's OAuth web-server flow (scopes api,"
        " refresh_token).")
    api_version: str = Field(API_VERSION, title="API version", pattern=r"^\d+\.\d$",
                             description="REST API version, e.g. 62.0.")
    access_token: SecretStr | None = Field(
        None, title="Access token", description="Kept by Reflow after each renewal.")
    access_token_expires_at: float | None = Field(None, title="Access token expiry")

    def identifying_value(self) -> str | None:
        return self.instance_url or self.login_url or LOGIN_URL


class SalesforceSyncOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    bulk_threshold: int = Field(
        2000, ge=1, title="Bulk API threshold",
        description="Batches of at least this many records are loaded with a Bulk API 2.0"
        " job; smaller ones with sObject Collections (200 records a request).")


class SalesforceDestination(SaasDestination):
    service_name = "salesforce"
    label = "Salesforce"
    documentation_slug = "salesforce"
    config_model = SalesforceConfig
    vendor = Vendor("Salesforce", LOGIN_URL, limits=(), batch_size=COLLECTION_SIZE,
                    concurrency=4)
    capabilities = DestinationCapabilities(
        operations=_OPERATIONS, batch_size=10_000, max_concurrency=1,
        field_preferences=True, lookups=True)
    sync_options_model = SalesforceSyncOptions
    #: First wait between two polls of a Bulk API job; doubles up to 10 s.
    bulk_poll_seconds = 0.5

    config: SalesforceConfig

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.instance: str | None = (config.instance_url or "").rstrip("/") or None
        #: (used, max) from the last ``Sforce-Limit-Info`` header.
        self.api_usage: tuple[int, int] | None = None
        #: Raw describes by object, apart from ``metadata`` (whose one lock is held while
        #: its loaders call ``describe``, and would serialize the describes of
        #: ``load_objects``). A connector lives for one request or run; two racing loads
        #: of one object store the same answer.
        self.describes: dict[str, dict[str, Any]] = {}

    # -- connection ----------------------------------------------------------------------
    def base_url(self) -> str:
        return (self.config.instance_url or self.config.login_url or LOGIN_URL).rstrip("/")

    def account_identity(self) -> str:
        return f"{self.config.client_id}|{self.config.refresh_token.get_secret_value()}"

    def make_auth(self, http: httpx.Client) -> Auth:
        login = (self.config.login_url or self.config.instance_url or LOGIN_URL).rstrip("/")
        stored = self.config.access_token
        return OAuthRefresh(
            vendor="Salesforce", http=http, token_url=f"{login}/services/oauth2/token",
            client_id=self.config.client_id,
            client_secret=self.config.client_secret.get_secret_value(),
            refresh_token=self.config.refresh_token.get_secret_value(),
            access_token=stored.get_secret_value() if stored and self.instance else None,
            expires_at=self.config.access_token_expires_at,
            hooks=self.connection_hooks(), on_token=self._learn_instance)

    def _learn_instance(self, body: Mapping[str, Any]) -> None:
        instance = str(body.get("instance_url") or "").rstrip("/")
        if instance and instance != self.instance:
            self.instance = instance
            self.connection_hooks().save_credentials({"instance_url": instance})

    def api(self, path: str) -> str:
        """The absolute URL of a REST resource of this org's API version."""
        if self.instance is None:
            self.client.auth.apply({})  # the token answer names the instance
        if self.instance is None:
            raise TerminalError("Salesforce did not return an instance_url with the token")
        return f"{self.instance}/services/data/v{self.config.api_version}{path}"

    def verify(self) -> None:
        self.call("GET", self.api("/sobjects"))

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request that must succeed: the daily limit raises ``QuotaExhausted``, any
        other 4xx ``TerminalError`` with Salesforce's message."""
        response = self.client.request(method, url, **kwargs)
        raise_for_quota(self, response)
        if response.status_code >= 400:
            raise TerminalError(f"Salesforce: {self.error_message(response)}")
        return response

    # -- how Salesforce answers ----------------------------------------------------------
    def error_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}: {response.text[:500]}"
        if isinstance(body, list) and body and isinstance(body[0], dict):
            return "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in body)
        if isinstance(body, dict) and body.get("error"):
            return f"{body['error']}: {body.get('error_description', '')}"
        return f"HTTP {response.status_code}: {response.text[:500]}"

    def observe(self, response: httpx.Response, limiter: Any) -> None:
        m = re.search(r"api-usage=(\d+)/(\d+)", response.headers.get("Sforce-Limit-Info", ""))
        if m:
            self.api_usage = (int(m.group(1)), int(m.group(2)))

    # -- metadata ------------------------------------------------------------------------
    def load_objects(self) -> list[DestinationObject]:
        names = [o["name"] for o in self.call("GET", self.api("/sobjects")).json()["sobjects"]
                 if o.get("createable") and o.get("updateable")]
        # One describe per object (an org has hundreds): several in flight at once.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8, thread_name_prefix="sf-describe") as pool:
            return [to_object(d) for d in pool.map(self.describe, names)]

    def describe(self, name: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            response = self.client.request("GET", self.api(f"/sobjects/{name}/describe"))
            raise_for_quota(self, response)
            if response.status_code == 404:
                raise ObjectNotFound(f"Salesforce has no object {name!r}")
            if response.status_code >= 400:
                raise TerminalError(f"Salesforce: {self.error_message(response)}")
            return dict(response.json())
        hit = self.describes.get(name)
        if hit is None:
            hit = self.describes[name] = load()
        return hit

    def get_object(self, full_name: str) -> DestinationObject:
        if not re.fullmatch(r"\w+", full_name):
            raise ObjectNotFound(f"Salesforce has no object {full_name!r}")
        return self.metadata.get(f"object:{full_name}",
                                 lambda: to_object(self.describe(full_name)))


def raise_for_quota(destination: SalesforceDestination, response: httpx.Response) -> None:
    if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
        usage = destination.api_usage
        spent = f" (api-usage {usage[0]}/{usage[1]})" if usage else ""
        raise QuotaExhausted(
            f"Salesforce daily API request limit reached{spent}:"
            f" {destination.error_message(response).rstrip('.')}. The next run sends what was not"
            " acknowledged.")


def to_object(describe: Mapping[str, Any]) -> DestinationObject:
    fields = tuple(to_field(f) for f in describe["fields"])
    keyed = any(f["externalId"] for f in describe["fields"])
    return DestinationObject(
        full_name=describe["name"], label=describe["label"],
        supported_operations=_OPERATIONS if keyed else ("update", "delete"),
        fields=fields)


def to_field(spec: Mapping[str, Any]) -> DestinationField:
    refs = spec.get("referenceTo") or []
    return DestinationField(
        full_name=spec["name"], label=spec["label"],
        type=field_type(spec["type"]),
        createable=bool(spec["createable"]), updateable=bool(spec["updateable"]),
        required=not spec["nillable"] and spec["createable"]
        and not spec.get("defaultedOnCreate"),
        identifier=spec["name"] == "Id" or bool(spec["externalId"]),
        lookup_object=refs[0] if refs else None)


class SalesforceWriter(SaasWriter):
    destination: SalesforceDestination

    def __init__(self, destination: Any, ctx: Any, obj: DestinationObject) -> None:
        super().__init__(destination, ctx, obj)
        self.describe = destination.describe(obj.full_name)
        options = SalesforceSyncOptions.model_validate(dict(ctx.options or {}))
        self.bulk_threshold = options.bulk_threshold
        self.by_id = ctx.key_field == "Id"
        #: The current write's prepared bodies by record index (``call_for`` reads them).
        self._bodies: dict[int, dict[str, Any]] = {}

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        if self.stopped is not None:
            raise self.stopped
        if batch.num_rows >= self.bulk_threshold:
            from reflow.connectors.destinations._salesforce_bulk import bulk_write

            return bulk_write(self, json_records(batch), action)
        return super().write(batch, action)

    # -- records as Salesforce wants them ------------------------------------------------
    def prepare(
        self, records: list[dict[str, Any]], action: Action
    ) -> tuple[list[tuple[int, dict[str, Any]]], list[RejectedRecord]]:
        """(index, body) of each record to send, and those refused before sending:
        lookups become relationship references, ``sync_null_values: false`` drops nulls,
        ``preserve_values`` drops fields the record already has, and update/delete by an
        external id learn each record's ``Id`` (a record Salesforce does not have is
        rejected for update and already gone for delete). Create never overwrites: a
        record Salesforce already has is left alone and counts as delivered."""
        needs_ids = not self.by_id and action in ("update", "delete")
        creating = not self.by_id and action == "insert"
        lookup = needs_ids or creating or self._preserving(action)
        current = self._current(records) if lookup else {}
        out, rejected = [], []
        for index, record in enumerate(records):
            key = record.get(self.ctx.key_field)
            found = current.get(_text(key))
            if creating and found is not None:
                continue
            if needs_ids and found is None:
                if action == "update":
                    rejected.append(RejectedRecord(
                        index, f"NOT_FOUND: no {self.object.full_name} with"
                        f" {self.ctx.key_field} = {key!r}"))
                continue  # deleting what is not there is done
            record_id = key if self.by_id else (found or {}).get("Id")
            if action == "delete":
                out.append((index, {"Id": record_id}))
                continue
            body = self._body(record, found)
            if action == "update" or self.by_id:
                body["Id"] = record_id
            out.append((index, body))
        return out, rejected

    def _preserving(self, action: Action) -> bool:
        return bool(self.ctx.set_if_empty) and action in ("upsert", "update")

    def _body(self, record: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name, value in record.items():
            if value is None and name in self.ctx.keep_on_null:
                continue
            if current is not None and name in self.ctx.set_if_empty and (
                    current.get(name) not in (None, "")):
                continue
            lookup = self.ctx.lookups.get(name)
            if lookup is not None and value is not None:
                body[self._relationship(name)] = {lookup[1]: value}
            elif not (self.by_id and name == "Id"):
                body[name] = value
        return body

    def _relationship(self, name: str) -> str:
        for spec in self.describe["fields"]:
            if spec["name"] == name and spec.get("relationshipName"):
                return str(spec["relationshipName"])
        raise TerminalError(f"Salesforce: {self.object.full_name}.{name} is not a reference")

    def _current(self, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The records Salesforce has for these keys, by key text: ``Id`` and the fields
        ``preserve_values`` needs to see."""
        key = self.ctx.key_field
        wanted = ["Id", *([key] if key != "Id" else []),
                  *sorted(f for f in self.ctx.set_if_empty if f not in ("Id", key))]
        values = sorted({_text(r.get(key)) for r in records if r.get(key) is not None})
        out: dict[str, dict[str, Any]] = {}
        for part in chunks(list(range(len(values))), COLLECTION_SIZE):
            quoted = ", ".join(_soql_literal(values[i]) for i in part)
            soql = (f"SELECT {', '.join(wanted)} FROM {self.object.full_name}"
                    f" WHERE {key} IN ({quoted})")
            for row in self._query(soql):
                out[_text(row.get(key))] = row
        return out

    def _query(self, soql: str) -> Iterator[dict[str, Any]]:
        body = self.destination.call("GET", self.destination.api("/query"),
                                     params={"q": soql}).json()
        while True:
            yield from body.get("records", [])
            if body.get("done", True) or not body.get("nextRecordsUrl"):
                return
            url = f"{self.destination.instance}{body['nextRecordsUrl']}"
            body = self.destination.call("GET", url).json()

    # -- sObject Collections -------------------------------------------------------------
    def calls(self, records: list[dict[str, Any]], action: Action
              ) -> Iterable[Call | RejectedRecord]:
        prepared, rejected = self.prepare(records, action)
        yield from rejected
        self._bodies = dict(prepared)
        for indices in chunks([i for i, _ in prepared], COLLECTION_SIZE):
            yield self.call_for(records, indices, action)

    def call_for(self, records: list[dict[str, Any]], indices: list[int],
                 action: Action) -> Call:
        """One sObject Collections request for the prepared bodies of ``indices``."""
        api, obj = self.destination.api, self.object.full_name
        bodies = [self._bodies[i] for i in indices]
        if action == "delete":
            return Call("DELETE", api("/composite/sobjects"), indices,
                        params={"ids": ",".join(b["Id"] for b in bodies),
                                "allOrNone": "false"})
        records_ = [{"attributes": {"type": obj}, **b} for b in bodies]
        payload = {"allOrNone": False, "records": records_}
        if action == "update" or (action == "upsert" and self.by_id):
            return Call("PATCH", api("/composite/sobjects"), indices, json=payload)
        if action == "upsert":
            return Call("PATCH", api(f"/composite/sobjects/{obj}/{self.ctx.key_field}"),
                        indices, json=payload)
        return Call("POST", api("/composite/sobjects"), indices, json=payload)

    def results(self, call: Call, response: httpx.Response) -> list[RejectedRecord]:
        raise_for_quota(self.destination, response)
        if not response.is_success:
            return super().results(call, response)
        out = []
        for index, result in zip(call.indices, response.json(), strict=True):
            if not result.get("success"):
                out.append(RejectedRecord(index, record_errors(result.get("errors") or [])))
        return out


def record_errors(errors: list[Mapping[str, Any]]) -> str:
    """Salesforce's reasons for one record, as it words them."""
    parts = []
    for error in errors:
        fields = error.get("fields") or []
        where = f" ({', '.join(fields)})" if fields else ""
        parts.append(f"{error.get('statusCode')}: {error.get('message')}{where}")
    return "; ".join(parts) or "refused by Salesforce without a reason"


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value)


def _soql_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


SalesforceDestination.writer_class = SalesforceWriter
