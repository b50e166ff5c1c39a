"""A Salesforce org as a real HTTP server on loopback, for the ``salesforce`` connector's
tests. It keeps its records in memory so a test reads back exactly what arrived.

Written from Salesforce's public references (pages followed):

* OAuth 2.0 refresh token flow, ``POST /services/oauth2/token``:
  https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_refresh_token_flow.htm
  (response without ``expires_in``; a revoked token answers 400 ``invalid_grant``
  ``expired access/refresh token``; an expired session answers 401
  ``INVALID_SESSION_ID`` "Session expired or invalid").
* REST API Developer Guide: Describe Global (``/sobjects``), sObject Describe
  (``/sobjects/{Object}/describe``: field ``type``, ``nillable``, ``createable``,
  ``updateable``, ``unique``, ``externalId``, ``idLookup``, ``referenceTo``,
  ``relationshipName``, ``length``), Query (``/query?q=``).
* sObject Collections: create (POST ``/composite/sobjects``), update (PATCH), delete
  (DELETE ``?ids=..&allOrNone=``), upsert (PATCH
  ``/composite/sobjects/{Object}/{ExternalIdField}``):
  https://developer.salesforce.com/docs/platform/api-rest/guide/resources-composite-sobjects-collections-upsert.html
  — at most 200 records, results in request order, ``{"id", "success", "errors":
  [{"statusCode", "message", "fields"}], "created"}``; upsert by external id only; a
  relationship given by the parent's external id (``"Account": {"External_Id__c": ..}``).
* Bulk API 2.0 ingest: create job, ``PUT /jobs/ingest/{id}/batches`` (CSV), ``PATCH``
  state ``UploadComplete``, ``GET`` job (``UploadComplete`` → ``InProgress`` →
  ``JobComplete``), ``successfulResults`` (``sf__Id``, ``sf__Created``, the row) and
  ``failedResults`` (``sf__Id``, ``sf__Error``, the row); ``#N/A`` sets a field null, an
  empty value leaves it; relationship columns ``Account.External_Id__c``.
* Limit Info Header ``Sforce-Limit-Info: api-usage=N/M`` on every REST response:
  https://developer.salesforce.com/docs/atlas.en-us.230.0.api_rest.meta/api/headers_api_usage.htm ;
  past the daily limit 403 ``REQUEST_LIMIT_EXCEEDED`` "TotalRequests Limit exceeded."

Deliberate simplifications: a SOQL subset (``SELECT f, .. FROM O [WHERE f IN (..)]``),
string field names matched case-insensitively as Salesforce does, result order of bulk
jobs reversed (Salesforce does not promise the upload order: clients must map results
back by the row's values), and blips: ``blip(n, status)`` makes the next ``n`` data
requests answer ``status``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_VERSION = "62.0"
MAX_COLLECTION = 200


def _field(name: str, type_: str, **extra: Any) -> dict[str, Any]:
    spec = {
        "name": name, "label": name.removesuffix("__c").replace("_", " "), "type": type_,
        "nillable": True, "createable": True, "updateable": True, "unique": False,
        "externalId": False, "idLookup": False, "referenceTo": [], "relationshipName": None,
        "length": 255 if type_ in ("string", "email", "textarea", "phone", "url") else 0,
        "defaultedOnCreate": False,
    }
    spec.update(extra)
    return spec


def _id_field() -> dict[str, Any]:
    return _field("Id", "id", nillable=False, createable=False, updateable=False,
                  idLookup=True, length=18, defaultedOnCreate=True)


def _external_id(name: str = "External_Id__c") -> dict[str, Any]:
    return _field(name, "string", unique=True, externalId=True, idLookup=True)


def _reference(name: str, target: str, relationship: str) -> dict[str, Any]:
    return _field(name, "reference", referenceTo=[target], relationshipName=relationship,
                  length=18)


def standard_objects() -> dict[str, dict[str, Any]]:
    """Account, Contact, Lead and a custom ``Thing__c``, each with an External ID."""
    return {
        "Account": {"prefix": "001", "custom": False, "fields": [
            _id_field(), _field("Name", "string", nillable=False, length=255),
            _external_id(), _field("Industry", "picklist"),
            _field("AnnualRevenue", "currency"), _field("NumberOfEmployees", "int"),
        ]},
        "Contact": {"prefix": "003", "custom": False, "fields": [
            _id_field(), _field("FirstName", "string", length=40),
            _field("LastName", "string", nillable=False, length=80),
            _field("Email", "email", idLookup=True, length=80),
            _reference("AccountId", "Account", "Account"), _external_id(),
            _field("Birthdate", "date"), _field("HasOptedOutOfEmail", "boolean",
                                                nillable=False, defaultedOnCreate=True),
        ]},
        "Lead": {"prefix": "00Q", "custom": False, "fields": [
            _id_field(), _field("FirstName", "string", length=40),
            _field("LastName", "string", nillable=False, length=80),
            _field("Company", "string", nillable=False, length=255),
            _field("Email", "email", idLookup=True, length=80), _external_id(),
        ]},
        "Thing__c": {"prefix": "a00", "custom": True, "fields": [
            _id_field(), _field("Name", "string", length=80), _external_id(),
            _field("Amount__c", "double"), _field("Active__c", "boolean", nillable=False,
                                                  defaultedOnCreate=True),
            _reference("Account__c", "Account", "Account__r"),
            _field("Created_At__c", "datetime"),
        ]},
    }


def seed_object() -> dict[str, Any]:
    """``Seed__c``, the conformance suite's object: ``Seed_Key__c`` (External ID),
    ``Name``, ``Amount__c``, ``Active__c``. ``Active__c`` is a text field: a checkbox
    cannot hold null in Salesforce, and the suite's seed rows have one."""
    return {"prefix": "a01", "custom": True, "fields": [
        _id_field(), _field("Name", "string", length=80), _external_id("Seed_Key__c"),
        _field("Amount__c", "double"), _field("Active__c", "string", length=5),
    ]}


class RecordError(Exception):
    def __init__(self, status_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status_code, self.message, self.fields = status_code, message, fields or []

    def as_json(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": self.fields}


class RequestError(Exception):
    """A whole request refused: ``status`` with Salesforce's ``[{message, errorCode}]``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class BulkJob:
    id: str
    object: str
    operation: str
    external_id: str | None
    line_ending: str
    state: str = "Open"
    csv_text: str = ""
    polls_left: int = 0
    error: str | None = None
    successful: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id, "operation": self.operation, "object": self.object,
            "state": self.state, "externalIdFieldName": self.external_id,
            "contentType": "CSV", "lineEnding": self.line_ending, "columnDelimiter": "COMMA",
            "apiVersion": float(API_VERSION), "jobType": "V2Ingest",
            "numberRecordsProcessed": len(self.successful) + len(self.failed)
            if self.state == "JobComplete" else 0,
            "numberRecordsFailed": len(self.failed) if self.state == "JobComplete" else 0,
            **({"errorMessage": self.error} if self.state == "Failed" else {}),
        }


@dataclass
class SalesforceOrg:
    """The org's state; tests read and tune it directly."""

    client_id: str = "3MVG9-reflow-client"
    client_secret: str = "reflow-client-secret"
    refresh_tokens: set[str] = field(default_factory=lambda: {"5Aep-refresh-token"})
    objects: dict[str, dict[str, Any]] = field(default_factory=standard_objects)
    #: Object -> Id -> field values (exact API names).
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: Issued access tokens and when each expires (monotonic seconds).
    tokens: dict[str, float] = field(default_factory=dict)
    token_lifetime: float = 3600.0
    api_limit: int = 100_000
    api_usage: int = 0
    #: When set, the daily limit is reached after this many more record-writing requests
    #: (sObject Collections, Bulk API): a test spends the quota mid-run deterministically.
    writes_left: int | None = None
    #: Records per page of a query answer (Salesforce: 2,000); the rest follows through
    #: ``nextRecordsUrl``.
    query_page_size: int = 2000
    #: Query cursors: id -> the records still to serve.
    cursors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Polls of a closed bulk job that still answer ``InProgress``.
    bulk_polls: int = 1
    #: The refresh token of every access token granted, in order.
    grants: list[str] = field(default_factory=list)
    #: (method, path) of every request, in arrival order.
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Validation rules: object -> [(predicate on the record, message)].
    rules: dict[str, list[tuple[Callable[[dict[str, Any]], bool], str]]] = field(
        default_factory=dict)
    jobs: dict[str, BulkJob] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _blips: list[int] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # -- test controls -------------------------------------------------------------------
    def blip(self, n: int = 1, status: int = 503) -> None:
        """The next ``n`` data requests answer ``status`` (a deterministic 5xx blip)."""
        with self.lock:
            self._blips.extend([status] * n)

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()

    def rows(self, obj: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.records.get(obj, {}).values()]

    def by(self, obj: str, field_name: str) -> dict[Any, dict[str, Any]]:
        return {r.get(field_name): r for r in self.rows(obj)}

    def requests_to(self, fragment: str) -> list[tuple[str, str]]:
        with self.lock:
            return [r for r in self.requests if fragment in r[1]]

    # -- metadata ------------------------------------------------------------------------
    def describe(self, obj: str) -> dict[str, Any]:
        spec = self._object(obj)
        name = self._object_name(obj)
        return {
            "name": name, "label": name.removesuffix("__c").replace("_", " "),
            "custom": spec["custom"], "createable": True, "updateable": True,
            "deletable": True, "queryable": True, "keyPrefix": spec["prefix"],
            "fields": [dict(f) for f in spec["fields"]],
        }

    def describe_global(self) -> dict[str, Any]:
        return {"encoding": "UTF-8", "maxBatchSize": MAX_COLLECTION, "sobjects": [
            {"name": n, "label": n.removesuffix("__c"), "custom": s["custom"],
             "keyPrefix": s["prefix"], "createable": True, "updateable": True,
             "deletable": True, "queryable": True,
             "urls": {"describe": f"/services/data/v{API_VERSION}/sobjects/{n}/describe"}}
            for n, s in self.objects.items()
        ]}

    def _object_name(self, obj: str) -> str:
        for name in self.objects:
            if name.lower() == obj.lower():
                return name
        raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")

    def _object(self, obj: str) -> dict[str, Any]:
        return self.objects[self._object_name(obj)]

    def _field_spec(self, obj: str, name: str) -> dict[str, Any] | None:
        return next((f for f in self._object(obj)["fields"]
                     if f["name"].lower() == name.lower()), None)

    def _relationship(self, obj: str, name: str) -> dict[str, Any] | None:
        return next((f for f in self._object(obj)["fields"]
                     if (f["relationshipName"] or "").lower() == name.lower()), None)

    # -- writing -------------------------------------------------------------------------
    def _new_id(self, obj: str) -> str:
        return f"{self._object(obj)['prefix']}{next(self._ids):015d}"

    def _find(self, obj: str, field_name: str, value: Any) -> str | None:
        for rid, rec in self.records.get(self._object_name(obj), {}).items():
            if rec.get(field_name) == value and value is not None:
                return rid
        return None

    def _values(self, obj: str, record: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        """A record's fields by their API names, relationships resolved, each checked."""
        out: dict[str, Any] = {}
        for key, value in record.items():
            if key in ("attributes", "id", "Id"):
                continue
            spec = self._field_spec(obj, key)
            if spec is None and isinstance(value, dict):
                spec, value = self._resolve_relationship(obj, key, value)
            if spec is None:
                raise RequestError(400, "INVALID_FIELD",
                                   f"No such column '{key}' on sobject of type "
                                   f"{self._object_name(obj)}")
            allowed = spec["createable"] if creating else spec["updateable"]
            if not allowed:
                verb = "create" if creating else "update"
                raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE",
                                  f"Unable to {verb} fields: {spec['name']}. Please check the"
                                  " security settings of this field and verify that it is"
                                  " read/write for your profile or permission set.",
                                  [spec["name"]])
            out[spec["name"]] = _checked(spec, value)
        return out

    def _resolve_relationship(
        self, obj: str, name: str, value: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, Any]:
        spec = self._relationship(obj, name)
        if spec is None:
            return None, value
        target = spec["referenceTo"][0]
        ((ext_field, ext_value),) = [(k, v) for k, v in value.items() if k != "attributes"]
        ext_spec = self._field_spec(target, ext_field)
        if ext_spec is None or not ext_spec["idLookup"]:
            raise RecordError("INVALID_FIELD", f"Field {ext_field} is not an external id or"
                              f" indexed field for {target}", [spec["name"]])
        found = self._find(target, ext_spec["name"], _checked(ext_spec, ext_value))
        if found is None:
            raise RecordError("INVALID_FIELD", f"Foreign key external ID: {ext_value} not"
                              f" found for field {ext_spec['name']} in entity {target}",
                              [spec["name"]])
        return spec, found

    def _validate(self, obj: str, full: dict[str, Any]) -> None:
        missing = [f["name"] for f in self._object(obj)["fields"]
                   if not f["nillable"] and not f["defaultedOnCreate"] and f["createable"]
                   and full.get(f["name"]) in (None, "")]
        if missing:
            raise RecordError("REQUIRED_FIELD_MISSING",
                              f"Required fields are missing: [{', '.join(missing)}]", missing)
        for ext in (f for f in self._object(obj)["fields"] if f["unique"]):
            value = full.get(ext["name"])
            other = self._find(obj, ext["name"], value)
            if other is not None and other != full.get("Id"):
                raise RecordError("DUPLICATE_VALUE", f"duplicate value found: {ext['name']}"
                                  f" duplicates value on record with id: {other}",
                                  [ext["name"]])
        for predicate, message in self.rules.get(self._object_name(obj), []):
            if predicate(full):
                raise RecordError("FIELD_CUSTOM_VALIDATION_EXCEPTION", message)

    def create(self, obj: str, record: dict[str, Any]) -> dict[str, Any]:
        values = self._values(obj, record, creating=True)
        full = {**_defaults(self._object(obj)), **values, "Id": self._new_id(obj)}
        self._validate(obj, full)
        self.records.setdefault(self._object_name(obj), {})[full["Id"]] = full
        return {"id": full["Id"], "success": True, "errors": [], "created": True}

    def update(self, obj: str, rid: str, record: dict[str, Any]) -> dict[str, Any]:
        current = self.records.get(self._object_name(obj), {}).get(rid)
        if current is None:
            raise RecordError("ENTITY_IS_DELETED" if rid[:3] == self._object(obj)["prefix"]
                              else "MALFORMED_ID", "entity is deleted")
        full = {**current, **self._values(obj, record, creating=False)}
        self._validate(obj, full)
        current.update(full)
        return {"id": rid, "success": True, "errors": [], "created": False}

    def upsert(self, obj: str, ext_field: str, record: dict[str, Any]) -> dict[str, Any]:
        spec = self._field_spec(obj, ext_field)
        value = next((v for k, v in record.items() if k.lower() == ext_field.lower()), None)
        if value in (None, ""):
            raise RecordError("MISSING_ARGUMENT", f"{ext_field} not specified")
        assert spec is not None
        rid = self._find(obj, spec["name"], _checked(spec, value))
        if rid is None:
            return self.create(obj, record)
        return self.update(obj, rid, record)

    def delete(self, rid: str) -> dict[str, Any]:
        for recs in self.records.values():
            if rid in recs:
                del recs[rid]
                return {"id": rid, "success": True, "errors": []}
        raise RecordError("ENTITY_IS_DELETED", "entity is deleted")

    def each(self, items: list[Any], op: Callable[[Any], dict[str, Any]]) -> list[Any]:
        """allOrNone=false: each record succeeds or fails on its own, in order."""
        out = []
        for item in items:
            try:
                out.append(op(item))
            except RecordError as exc:
                rid = item if isinstance(item, str) else None
                out.append({"id": rid, "success": False, "errors": [exc.as_json()]})
        return out

    # -- query ---------------------------------------------------------------------------
    def query(self, soql: str) -> dict[str, Any]:
        m = re.fullmatch(r"\s*SELECT\s+(.+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+(\w+)\s+IN\s*\((.*)\))?"
                         r"\s*", soql, re.IGNORECASE | re.DOTALL)
        if not m:
            raise RequestError(400, "MALFORMED_QUERY", f"unexpected token in: {soql[:80]}")
        names = [n.strip() for n in m.group(1).split(",")]
        obj = self._object_name(m.group(2))
        specs = [self._field_spec(obj, n) for n in names]
        if any(s is None for s in specs):
            bad = names[specs.index(None)]
            raise RequestError(400, "INVALID_FIELD", f"No such column '{bad}' on entity '{obj}'")
        rows = list(self.records.get(obj, {}).values())
        if m.group(3):
            where = self._field_spec(obj, m.group(3))
            wanted = set(re.findall(r"'((?:[^'\\]|\\.)*)'", m.group(4)))
            rows = [r for r in rows if where and str(r.get(where["name"])) in wanted]
        records = [{"attributes": {"type": obj}, **{s["name"]: r.get(s["name"])
                                                   for s in specs if s}} for r in rows]
        return self.page(f"01g{next(self._ids):015d}", records, len(records))

    def page(self, cursor: str, records: list[dict[str, Any]], total: int) -> dict[str, Any]:
        """One page of a query answer; the rest waits under ``cursor``."""
        first, rest = records[:self.query_page_size], records[self.query_page_size:]
        answer: dict[str, Any] = {"totalSize": total, "done": not rest, "records": first}
        if rest:
            self.cursors[cursor] = rest
            answer["nextRecordsUrl"] = f"/services/data/v{API_VERSION}/query/{cursor}"
        return answer

    # -- bulk ----------------------------------------------------------------------------
    def run_job(self, job: BulkJob) -> None:
        rows = list(csv.DictReader(io.StringIO(job.csv_text)))
        job.columns = list(rows[0].keys()) if rows else []
        for column in job.columns:  # a header Salesforce cannot map fails the whole job
            name = column.partition(".")[0]
            if (self._field_spec(job.object, name) is None
                    and self._relationship(job.object, name) is None):
                job.error = f"InvalidBatch : Field name not found : {column}"
                return
        for row in reversed(rows):  # Salesforce does not keep the upload order
            try:
                result = self._bulk_row(job, row)
                job.successful.append({"sf__Id": result["id"],
                                       "sf__Created": str(result.get("created", False)).lower(),
                                       **row})
            except (RecordError, RequestError) as exc:
                message = exc.message if isinstance(exc, RequestError) else (
                    f"{exc.status_code}:{exc.message}:{'--'.join(exc.fields) or '--'}")
                job.failed.append({"sf__Id": row.get("Id", ""), "sf__Error": message, **row})

    def _bulk_row(self, job: BulkJob, row: dict[str, str]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for column, text in row.items():
            if text == "":
                continue  # an empty value leaves the field as it is
            value: Any = None if text == "#N/A" else text
            rel, _, ext = column.partition(".")
            if ext:
                record[rel] = {ext: value}
            else:
                record[column] = value
        if job.operation == "insert":
            return self.create(job.object, record)
        if job.operation == "update":
            return self.update(job.object, row.get("Id", ""), record)
        if job.operation == "upsert":
            return self.upsert(job.object, job.external_id or "Id", record)
        return self.delete(row.get("Id", ""))


def _defaults(spec: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: False if f["type"] == "boolean" else None for f in spec["fields"]}


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _checked(spec: dict[str, Any], value: Any) -> Any:
    """A value as Salesforce stores it, or the per-record error it answers."""
    name, kind = spec["name"], spec["type"]
    if value is None or value == "":
        return False if kind == "boolean" else None
    if kind in ("string", "email", "textarea", "phone", "url", "picklist"):
        value = str(value)
        if spec["length"] and len(value) > spec["length"]:
            raise RecordError("STRING_TOO_LONG", f"{spec['label']}: data value too large:"
                              f" {value[:40]} (max length={spec['length']})", [name])
        if kind == "email" and not _EMAIL.match(value):
            raise RecordError("INVALID_EMAIL_ADDRESS",
                              f"{spec['label']}: invalid email address: {value}", [name])
        return value
    if kind in ("double", "currency", "percent", "int"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RecordError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{spec['label']}: value not"
                              f" of required type: {value}", [name]) from None
        return int(number) if kind == "int" else number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        return str(value).lower() in ("true", "1")
    return value


class _Handler(BaseHTTPRequestHandler):
    org: SalesforceOrg
    base_url: str

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._handle()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        org = self.org
        with org.lock:
            org.requests.append((self.command, url.path))
        try:
            if url.path == "/services/oauth2/token" and self.command == "POST":
                self._reply(*self._token(body))
                return
            if url.path.rstrip("/") == "/services/data":
                self._reply(200, [{"label": "Winter '25", "version": API_VERSION,
                                   "url": f"/services/data/v{API_VERSION}"}])
                return
            status, payload, ctype = self._data(url.path, parse_qs(url.query), body)
            self._reply(status, payload, ctype, limit_header=True)
        except RequestError as exc:
            self._reply(exc.status, [{"message": exc.message, "errorCode": exc.code}],
                        limit_header=True)

    def _token(self, body: bytes) -> tuple[int, Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        org = self.org
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "grant type not supported"}
        if form.get("client_id") != org.client_id:
            return 400, {"error": "invalid_client_id",
                         "error_description": "client identifier invalid"}
        if form.get("client_secret") != org.client_secret:
            return 400, {"error": "invalid_client",
                         "error_description": "invalid client credentials"}
        if form.get("refresh_token") not in org.refresh_tokens:
            return 400, {"error": "invalid_grant",
                         "error_description": "expired access/refresh token"}
        token = f"00D-access-{next(org._ids)}"
        with org.lock:
            org.tokens[token] = time.monotonic() + org.token_lifetime
            org.grants.append(form["refresh_token"])
        return 200, {"access_token": token, "instance_url": self.base_url,
                     "id": f"{self.base_url}/id/00D000000000001/005000000000001",
                     "token_type": "Bearer", "scope": "api refresh_token",
                     "issued_at": str(int(time.time() * 1000)), "signature": "c2lnbmF0dXJl"}

    def _authorize(self) -> None:
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").removeprefix("OAuth ")
        expires = self.org.tokens.get(token)
        if expires is None or expires < time.monotonic():
            raise RequestError(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def _count(self, rest: str) -> None:
        org = self.org
        with org.lock:
            if org._blips:
                status = org._blips.pop(0)
                raise RequestError(status, "SERVER_UNAVAILABLE",
                                   "Service temporarily unavailable, please retry")
            if org.writes_left is not None and rest.startswith(("/composite", "/jobs")):
                if org.writes_left <= 0:
                    org.api_limit = org.api_usage
                org.writes_left -= 1
            if org.api_usage >= org.api_limit:
                raise RequestError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            org.api_usage += 1

    def _data(self, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any, str]:
        prefix = f"/services/data/v{API_VERSION}"
        if not path.startswith(prefix):
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        self._authorize()
        rest = unquote(path[len(prefix):]).rstrip("/")
        self._count(rest)
        with self.org.lock:
            return self._route(self.command, rest, query, body)

    def _route(self, method: str, rest: str, query: dict[str, list[str]],
               body: bytes) -> tuple[int, Any, str]:
        org, js = self.org, "application/json"
        if rest == "/sobjects" and method == "GET":
            return 200, org.describe_global(), js
        if m := re.fullmatch(r"/sobjects/(\w+)/describe", rest):
            return 200, org.describe(m.group(1)), js
        if rest == "/query" and method == "GET":
            return 200, org.query(query.get("q", [""])[0]), js
        if (m := re.fullmatch(r"/query/(\w+)", rest)) and m.group(1) in org.cursors:
            records = org.cursors.pop(m.group(1))
            return 200, org.page(m.group(1), records, len(records)), js
        if rest == "/limits" and method == "GET":
            return 200, {"DailyApiRequests": {"Max": org.api_limit,
                                              "Remaining": org.api_limit - org.api_usage}}, js
        if rest.startswith("/composite/sobjects"):
            return 200, self._collections(method, rest, query, body), js
        if rest.startswith("/jobs/ingest"):
            return self._bulk(method, rest, body)
        raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")

    def _collections(self, method: str, rest: str, query: dict[str, list[str]],
                     body: bytes) -> list[Any]:
        org = self.org
        if method == "DELETE":
            ids = query.get("ids", [""])[0].split(",")
            _check_size(ids)
            return org.each(ids, org.delete)
        payload = json.loads(body or b"{}")
        if payload.get("allOrNone"):
            raise RequestError(400, "INVALID_FIELD", "the fake implements allOrNone=false only")
        records = payload.get("records") or []
        _check_size(records)
        objs = {r.get("attributes", {}).get("type") for r in records}
        if None in objs:
            raise RequestError(400, "INVALID_FIELD", "Each record needs attributes.type")
        if m := re.fullmatch(r"/composite/sobjects/(\w+)/(\w+)", rest):
            obj, ext = m.group(1), m.group(2)
            spec = org._field_spec(obj, ext)
            if spec is None or not spec["externalId"]:
                raise RequestError(400, "INVALID_FIELD", f"Field name provided, {ext} is not an"
                                   f" External ID or indexed field for {obj}")
            return org.each(records, lambda r: org.upsert(obj, ext, r))
        if method == "POST":
            return org.each(records, lambda r: org.create(r["attributes"]["type"], r))
        if method == "PATCH":
            return org.each(records, lambda r: org.update(r["attributes"]["type"],
                                                          r.get("id") or r.get("Id") or "", r))
        raise RequestError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")

    def _bulk(self, method: str, rest: str, body: bytes) -> tuple[int, Any, str]:
        org, js = self.org, "application/json"
        if rest == "/jobs/ingest" and method == "POST":
            spec = json.loads(body)
            org._object_name(spec.get("object", ""))
            job = BulkJob(id=f"750{next(org._ids):015d}", object=spec["object"],
                          operation=spec["operation"],
                          external_id=spec.get("externalIdFieldName"),
                          line_ending=spec.get("lineEnding", "LF"))
            org.jobs[job.id] = job
            return 200, job.info(), js
        m = re.fullmatch(r"/jobs/ingest/(\w+)(/\w+)?", rest)
        job = org.jobs.get(m.group(1)) if m else None
        if job is None or m is None:
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        tail = m.group(2)
        if tail == "/batches" and method == "PUT":
            if job.state != "Open":
                raise RequestError(400, "INVALIDJOBSTATE", "Job is not open for uploads")
            job.csv_text += body.decode("utf-8")
            return 201, "", "text/plain"
        if tail is None and method == "PATCH":
            if json.loads(body).get("state") == "UploadComplete":
                job.state, job.polls_left = "UploadComplete", org.bulk_polls
                org.run_job(job)
            return 200, job.info(), js
        if tail is None and method == "GET":
            if job.state in ("UploadComplete", "InProgress"):
                done = "Failed" if job.error else "JobComplete"
                job.state = "InProgress" if job.polls_left > 0 else done
                job.polls_left -= 1
            return 200, job.info(), js
        if tail in ("/successfulResults", "/failedResults") and method == "GET":
            rows = job.successful if tail == "/successfulResults" else job.failed
            first = ["sf__Id", "sf__Created"] if tail == "/successfulResults" else [
                "sf__Id", "sf__Error"]
            return 200, _csv(first + job.columns, rows), "text/csv"
        raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")

    def _reply(self, status: int, payload: Any, ctype: str = "application/json",
               *, limit_header: bool = False) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if limit_header:
            self.send_header("Sforce-Limit-Info",
                             f"api-usage={self.org.api_usage}/{self.org.api_limit}")
        self.end_headers()
        self.wfile.write(data)


def _check_size(items: list[Any]) -> None:
    if len(items) > MAX_COLLECTION:
        raise RequestError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more"
                           f" than {MAX_COLLECTION} records into this call")


def _csv(columns: list[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n",
                            quoting=csv.QUOTE_ALL, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


class SalesforceFake:
    """``with SalesforceFake() as sf:`` — ``sf.url`` is both the login and the instance
    URL; ``sf.org`` is the org's state."""

    def __init__(self, org: SalesforceOrg | None = None) -> None:
        self.org = org or SalesforceOrg()
        handler = type("Handler", (_Handler,), {"org": self.org, "base_url": ""})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        handler.base_url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def credentials(self, **overrides: Any) -> dict[str, Any]:
        """The connector's credentials for this org."""
        return {"login_url": self.url, "client_id": self.org.client_id,
                "client_secret": self.org.client_secret,
                "refresh_token": next(iter(self.org.refresh_tokens), "revoked"), **overrides}

    def __enter__(self) -> SalesforceFake:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
