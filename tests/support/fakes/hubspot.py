"""A HubSpot portal as a real HTTP server on loopback, for the ``hubspot`` connector's tests
and benchmark. Records live in memory, so a test reads back exactly what arrived.

Written from HubSpot's public references (pages followed):

* CRM objects v3, batch endpoints (``POST /crm/v3/objects/{objectType}/batch/{upsert,
  create,update,read,archive}``):
  https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/batch/upsert-contacts
  — ``{"inputs": [{"id", "idProperty", "properties"}]}``, at most 100 inputs; results
  ``{"status": "COMPLETE", "results": [{"id", "properties", "new", ...}]}``; an invalid
  input fails the whole request with 400 ``VALIDATION_ERROR`` ("Property values were not
  valid: [...]"); update/read of missing records answer 207 with ``errors``
  (``OBJECT_NOT_FOUND``, ``context.ids``); creating an existing unique value answers 409
  ``CONFLICT``. Property values are strings; "" clears a property.
* Properties v3 (``GET/POST /crm/v3/properties/{objectType}``: ``name``, ``type``,
  ``fieldType``, ``hasUniqueValue``, ``modificationMetadata.readOnlyValue``; 409
  ``OBJECT_ALREADY_EXISTS`` for an existing name) and Schemas v3 (``GET /crm/v3/schemas``,
  custom objects, paginated with ``paging.next.after``).
* Associations v4, ``POST /crm/v4/associations/{from}/{to}/batch/associate/default``.
* OAuth ``POST /oauth/v1/token`` (form ``grant_type=refresh_token``): ``access_token``,
  ``refresh_token``, ``expires_in`` (1800); an unknown refresh token answers 400
  ``BAD_REFRESH_TOKEN``; an expired access token 401 ``EXPIRED_AUTHENTICATION``.
* Usage details and limits, https://developers.hubspot.com/apisbytier and
  https://developers.hubspot.com/changelog/2018-11-06-rate-limit-information-headers-will-be-included-in-http-responses
  — 100 requests per 10 s (rolling) and 250,000 a day for a Free/Starter private app;
  headers ``X-HubSpot-RateLimit-{Max,Remaining,Interval-Milliseconds,Daily,
  Daily-Remaining}``; a 429 body ``{"status": "error", "message": "You have reached your
  ten_secondly_rolling limit.", "errorType": "RATE_LIMIT", "policyName":
  "TEN_SECONDLY_ROLLING"}`` (``"DAILY"`` for the daily one).

Simplifications: no Retry-After on 429s (HubSpot sends none for these policies), ids are
sequential, ``blips`` answer 502 with HubSpot's gateway body. ``python -m
tests.support.fakes.hubspot`` serves one portal until killed (the benchmark's).
"""

from __future__ import annotations

import bisect
import itertools
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.support.fakes._server import Blips, FakeServer, Incoming, Reply

MAX_INPUTS = 100
#: Requests per 10 s announced when the limit is lifted.
LIFTED = 1_000_000
TOKEN_LIFETIME = 1800


def prop(name: str, type_: str = "string", field_type: str = "text", *,
         unique: bool = False, read_only: bool = False) -> dict[str, Any]:
    return {"name": name, "label": name.replace("_", " ").title(), "type": type_,
            "fieldType": field_type, "groupName": "reflow", "hasUniqueValue": unique,
            "calculated": False, "hidden": False,
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": read_only,
                                     "readOnlyValue": read_only}}


def _standard() -> dict[str, ObjectType]:
    base = [prop("hs_object_id", "number", "number", unique=True, read_only=True),
            prop("createdate", "datetime", "date", read_only=True)]
    return {
        "contacts": ObjectType("contacts", "0-1", "CONTACT", base + [
            prop("email", unique=True), prop("firstname"), prop("lastname"), prop("company"),
            prop("phone", "string", "phonenumber"), prop("lifecyclestage", "enumeration", "select"),
            prop("annualrevenue", "number", "number")]),
        "companies": ObjectType("companies", "0-2", "COMPANY", base + [
            prop("name"), prop("domain"), prop("industry", "enumeration", "select"),
            prop("company_key", unique=True)]),
        "deals": ObjectType("deals", "0-3", "DEAL", base + [
            prop("dealname"), prop("amount", "number", "number"), prop("dealstage"),
            prop("closedate", "datetime", "date")]),
        "tickets": ObjectType("tickets", "0-5", "TICKET", base + [
            prop("subject"), prop("content", "string", "textarea"), prop("hs_pipeline_stage")]),
    }


@dataclass
class ObjectType:
    name: str
    type_id: str
    singular: str
    properties: list[dict[str, Any]]
    custom: bool = False
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Unique property -> value -> record id (HubSpot enforces unique values).
    index: dict[str, dict[str, str]] = field(default_factory=dict)
    _by_name: dict[str, dict[str, Any]] = field(default_factory=dict)

    def prop(self, name: str) -> dict[str, Any] | None:
        # A dict rebuilt when properties were added: the benchmark asks ~1M times.
        if len(self._by_name) != len(self.properties):
            self._by_name = {p["name"]: p for p in self.properties}
        return self._by_name.get(name)

    def find(self, id_property: str | None, value: Any) -> str | None:
        if not id_property or id_property == "hs_object_id":
            return str(value) if str(value) in self.records else None
        return self.index.get(id_property, {}).get(_key(id_property, str(value)))

    def apply(self, rid: str, props: dict[str, str]) -> None:
        record = self.records.setdefault(rid, {"hs_object_id": rid})
        uniques = self.unique_names()
        for name, value in props.items():
            unique = self.index.setdefault(name, {}) if name in uniques else None
            if unique is not None and record.get(name) is not None:
                unique.pop(_key(name, record[name]), None)
            if value == "":
                record.pop(name, None)  # "" clears the property
                continue
            record[name] = value
            if unique is not None:
                unique[_key(name, value)] = rid

    def remove(self, rid: str) -> None:
        record = self.records.pop(rid, None) or {}
        for name, value in record.items():
            self.index.get(name, {}).pop(_key(name, value), None)

    def unique_names(self) -> set[str]:
        return {p["name"] for p in self.properties
                if p["hasUniqueValue"] and p["name"] != "hs_object_id"}


def _key(name: str, value: str) -> str:
    return value.lower() if name == "email" else value


class RequestError(Exception):
    def __init__(self, status: int, message: str, category: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.category, self.extra = status, message, category, extra

    def body(self) -> dict[str, Any]:
        return {"status": "error", "message": self.message, "correlationId": str(uuid.uuid4()),
                "category": self.category, **self.extra}


class HubSpotFake(FakeServer):
    """``fake.objects[name].records`` hold what arrived, properties as HubSpot's strings."""

    def __init__(self, *, rate_limit: tuple[int, float] | None = (100, 10.0),
                 daily_limit: int = 250_000) -> None:
        super().__init__()
        self.lock = threading.RLock()
        self.objects = _standard()
        self.private_tokens = {"pat-na1-good"}
        self.client_id, self.client_secret = "hs-client", "hs-secret"
        self.refresh_tokens = {"hs-refresh-1"}
        self.access_tokens: dict[str, float] = {}
        self.token_lifetime = TOKEN_LIFETIME
        #: (requests, seconds) of the rolling window; None lifts it (the benchmark's a).
        self.rate_limit = rate_limit
        self.daily_limit, self.daily_used = daily_limit, 0
        #: Batch write requests left before the daily quota is spent (None: no such plan).
        self.writes_left: int | None = None
        self.blips = Blips()
        self.associations: list[tuple[str, str, str, str]] = []
        self.requests: list[tuple[float, str, str]] = []
        self.throttled = 0
        self._window: deque[float] = deque()
        self._ids = itertools.count(1001)

    # -- what tests use --------------------------------------------------------------------
    def credentials(self, **overrides: Any) -> dict[str, Any]:
        return {"access_token": "pat-na1-good", "base_url": self.url, **overrides}

    def oauth_credentials(self, **overrides: Any) -> dict[str, Any]:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "refresh_token": next(iter(self.refresh_tokens), "revoked"),
                "base_url": self.url, **overrides}

    def add_custom_object(self, name: str, properties: list[dict[str, Any]]) -> None:
        with self.lock:
            type_id = f"2-{next(self._ids)}"
            base = [prop("hs_object_id", "number", "number", unique=True, read_only=True)]
            self.objects[name] = ObjectType(name, type_id, name.upper(), base + properties,
                                            custom=True)

    def rows(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(p) for p in self.objects[name].records.values()]

    def expire_tokens(self) -> None:
        with self.lock:
            self.access_tokens = {t: 0.0 for t in self.access_tokens}

    def peak_window(self, seconds: float) -> int:
        """Most data requests the portal accepted in any rolling window of ``seconds``."""
        times = sorted(t for t, _, _ in self.requests)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    # -- HTTP --------------------------------------------------------------------------------
    def stats(self, seconds: float) -> dict[str, Any]:
        """What the benchmark reads from a fake in another process."""
        with self.lock:
            writes = [t for t, _, path in self.requests if "/batch/" in path]
            return {"records": {n: len(o.records) for n, o in self.objects.items()},
                    "requests": len(self.requests), "throttled": self.throttled,
                    "peak": self.peak_window(seconds), "writes": len(writes),
                    "write_span": writes[-1] - writes[0] if len(writes) > 1 else 0.0}

    def route(self, request: Incoming) -> Reply:
        if request.path == "/oauth/v1/token" and request.method == "POST":
            return self._token(request.body)
        if request.path == "/__fake/stats":  # the benchmark's window on the fake
            window = self.rate_limit[1] if self.rate_limit else 10.0
            return Reply(200, self.stats(window))
        try:
            self._authorize(request)
            limits = self._count(request)
            status, payload = self._dispatch(request)
            return Reply(status, payload, limits)
        except RequestError as exc:
            return Reply(exc.status, exc.body(), exc.extra.pop("_headers", {}))

    def _token(self, body: bytes) -> Reply:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                   self.client_secret):
            return Reply(400, {"status": "BAD_CLIENT_ID", "message": "missing or invalid client"
                               " id", "correlationId": str(uuid.uuid4())})
        if form.get("grant_type") != "refresh_token" or \
                form.get("refresh_token") not in self.refresh_tokens:
            return Reply(400, {"status": "BAD_REFRESH_TOKEN",
                               "message": "missing or unknown refresh token",
                               "correlationId": str(uuid.uuid4())})
        token = f"CJ-oauth-{uuid.uuid4().hex}"
        with self.lock:
            self.access_tokens[token] = time.monotonic() + self.token_lifetime
        return Reply(200, {"token_type": "bearer", "refresh_token": form["refresh_token"],
                           "access_token": token, "expires_in": self.token_lifetime})

    def _authorize(self, request: Incoming) -> None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token in self.private_tokens:
            return
        expires = self.access_tokens.get(token)
        if expires is None:
            raise RequestError(401, "Authentication credentials not found. This API supports "
                               "OAuth 2.0 authentication and you can find more details at "
                               "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                               "INVALID_AUTHENTICATION")
        if expires < time.monotonic():
            raise RequestError(401, "The OAuth token used to make this call expired 1 minute(s)"
                               " ago.", "EXPIRED_AUTHENTICATION")

    def exhaust_after(self, writes: int | None) -> None:
        """Spend the daily quota once ``writes`` more batch writes were accepted: the
        requests of a run are counted without the test predicting its metadata calls."""
        with self.lock:
            self.writes_left = writes
            if writes is None:
                self.daily_used = 0

    def _count(self, request: Incoming) -> dict[str, str]:
        with self.lock:
            now = request.received or time.monotonic()
            if self.writes_left is not None and "/batch/" in request.path:
                if self.writes_left <= 0:
                    self.daily_used = self.daily_limit
                self.writes_left -= 1
            if self.daily_used >= self.daily_limit:
                self.throttled += 1
                raise self._limited("You have reached your daily limit.", "DAILY")
            if self.rate_limit is not None:
                limit, seconds = self.rate_limit
                # Arrival order and handling order may differ by a thread switch: the
                # window holds arrival times, sorted.
                while self._window and now - self._window[0] >= seconds:
                    self._window.popleft()
                if sum(1 for t in self._window if now - seconds < t <= now) >= limit:
                    self.throttled += 1
                    raise self._limited("You have reached your ten_secondly_rolling limit.",
                                        "TEN_SECONDLY_ROLLING")
                bisect.insort(self._window, now)
            status = self.blips.take()
            if status is not None:
                raise RequestError(status, "Bad Gateway: the upstream server did not respond",
                                   "SERVICE_UNAVAILABLE")
            self.daily_used += 1
            return self._limit_headers()

    def _limit_headers(self) -> dict[str, str]:
        headers = {"X-HubSpot-RateLimit-Daily": str(self.daily_limit),
                   "X-HubSpot-RateLimit-Daily-Remaining": str(self.daily_limit - self.daily_used)}
        # A lifted limit is announced as a window no client reaches (as the API add-on
        # raises a portal's limits), so clients pace by it, not by the documented one.
        limit, seconds = self.rate_limit or (LIFTED, 10.0)
        headers.update({"X-HubSpot-RateLimit-Max": str(limit),
                        "X-HubSpot-RateLimit-Remaining": str(limit - len(self._window)),
                        "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(seconds * 1000))})
        return headers

    def _limited(self, message: str, policy: str) -> RequestError:
        return RequestError(429, message, "RATE_LIMIT", errorType="RATE_LIMIT",
                            policyName=policy, requestId=str(uuid.uuid4()),
                            _headers=self._limit_headers())

    def _dispatch(self, request: Incoming) -> tuple[int, Any]:
        path, method = request.path.rstrip("/"), request.method
        with self.lock:
            self.requests.append((request.received or time.monotonic(), method, path))
            if m := re.fullmatch(r"/crm/v3/objects/([\w-]+)/batch/(\w+)", path):
                return self._batch(self._object(m.group(1)), m.group(2), request.json())
            if m := re.fullmatch(r"/crm/v3/objects/([\w-]+)", path):
                return 200, self._list(self._object(m.group(1)), request.query)
            if m := re.fullmatch(r"/crm/v3/properties/([\w-]+)", path):
                obj = self._object(m.group(1))
                if method == "POST":
                    return 201, self._create_property(obj, request.json())
                return 200, {"results": obj.properties}
            if path == "/crm/v3/schemas":
                return 200, self._schemas(request.query)
            if m := re.fullmatch(r"/crm/v4/associations/([\w-]+)/([\w-]+)/batch/associate/default",
                                 path):
                return self._associate(m.group(1), m.group(2), request.json())
        raise RequestError(404, f"Not found: {method} {path}", "OBJECT_NOT_FOUND")

    def _object(self, name: str) -> ObjectType:
        for obj in self.objects.values():
            if name in (obj.name, obj.type_id, obj.singular.lower()):
                return obj
        raise RequestError(400, f"Unable to infer object type from: {name}", "VALIDATION_ERROR")

    def _schemas(self, query: dict[str, str]) -> dict[str, Any]:
        custom = [o for o in self.objects.values() if o.custom]
        start = int(query.get("after") or 0)
        page = custom[start:start + 1]  # one a page: clients must follow the cursor
        body: dict[str, Any] = {"results": [
            {"name": o.name, "objectTypeId": o.type_id, "fullyQualifiedName": f"p_{o.name}",
             "labels": {"singular": o.singular.title(), "plural": o.name.title()},
             "properties": o.properties} for o in page]}
        if start + 1 < len(custom):
            body["paging"] = {"next": {"after": str(start + 1)}}
        return body

    def _create_property(self, obj: ObjectType, spec: dict[str, Any]) -> dict[str, Any]:
        name = str(spec.get("name") or "")
        if obj.prop(name) is not None:
            raise RequestError(409, f"Property named '{name}' already exists.",
                               "OBJECT_ALREADY_EXISTS")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise RequestError(400, f"Property name '{name}' is invalid: use lowercase letters,"
                               " digits and underscores", "VALIDATION_ERROR")
        created = prop(name, spec.get("type", "string"), spec.get("fieldType", "text"),
                       unique=bool(spec.get("hasUniqueValue")))
        created["label"] = spec.get("label") or name
        obj.properties.append(created)
        return created

    def _list(self, obj: ObjectType, query: dict[str, str]) -> dict[str, Any]:
        ids = sorted(obj.records, key=int)
        start = int(query.get("after") or 0)
        limit = min(100, int(query.get("limit") or 10))
        page = ids[start:start + limit]
        body: dict[str, Any] = {"results": [self._result(obj, i) for i in page]}
        if start + limit < len(ids):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return body

    # -- batch endpoints ------------------------------------------------------------------
    def _batch(self, obj: ObjectType, action: str, body: Any) -> tuple[int, Any]:
        inputs = (body or {}).get("inputs")
        if not isinstance(inputs, list):
            raise RequestError(400, "Invalid input JSON on line 1: inputs is required",
                               "VALIDATION_ERROR")
        if len(inputs) > MAX_INPUTS:
            raise RequestError(400, f"The maximum number of inputs supported in a batch request"
                               f" is {MAX_INPUTS}. Please reduce the number of items and try"
                               " again", "VALIDATION_ERROR")
        handler = {"upsert": self._upsert, "create": self._create, "update": self._update,
                   "read": self._read, "archive": self._archive}.get(action)
        if handler is None:
            raise RequestError(404, f"Not found: batch/{action}", "OBJECT_NOT_FOUND")
        return handler(obj, inputs, body)

    def _validate(self, obj: ObjectType, properties: dict[str, Any]) -> dict[str, str]:
        problems, clean = [], {}
        for name, value in (properties or {}).items():
            spec = obj.prop(name)
            text = "" if value is None else (str(value).lower() if isinstance(value, bool)
                                             else str(value))
            error = _invalid(spec, name, text)
            if error:
                problems.append(error)
            clean[name] = text
        if problems:
            import json

            raise RequestError(400, f"Property values were not valid: {json.dumps(problems)}",
                               "VALIDATION_ERROR")
        return clean

    def _upsert(self, obj: ObjectType, inputs: list[Any], _: Any) -> tuple[int, Any]:
        checked = []
        for item in inputs:
            id_property = item.get("idProperty")
            spec = obj.prop(id_property) if id_property else None
            if id_property and (spec is None or not spec["hasUniqueValue"]):
                raise RequestError(400, f"{id_property} is not a unique property of "
                                   f"{obj.name}", "VALIDATION_ERROR")
            key_value = {id_property: item.get("id")} if id_property else {}
            checked.append((item, self._validate(obj, {**(item.get("properties") or {}),
                                                       **key_value})))
        results = []
        for item, props in checked:
            rid = obj.find(item.get("idProperty"), item["id"])
            new = rid is None
            if new:
                rid = str(next(self._ids))
            obj.apply(rid, props)
            results.append({**self._result(obj, rid), "new": new})
        return 200, _complete(results)

    def _create(self, obj: ObjectType, inputs: list[Any], _: Any) -> tuple[int, Any]:
        checked = [self._validate(obj, item.get("properties") or {}) for item in inputs]
        for props in checked:
            for spec in obj.properties:
                value = props.get(spec["name"])
                if spec["hasUniqueValue"] and value and obj.find(spec["name"], value):
                    existing = obj.find(spec["name"], value)
                    raise RequestError(409, f"{obj.singular.title()} already exists. Existing"
                                       f" ID: {existing}", "CONFLICT")
        results = []
        for props in checked:
            rid = str(next(self._ids))
            obj.apply(rid, props)
            results.append(self._result(obj, rid))
        return 201, _complete(results)

    def _update(self, obj: ObjectType, inputs: list[Any], _: Any) -> tuple[int, Any]:
        checked = [(item, self._validate(obj, item.get("properties") or {})) for item in inputs]
        results, missing = [], []
        for item, props in checked:
            rid = obj.find(item.get("idProperty"), item.get("id"))
            if rid is None:
                missing.append(str(item.get("id")))
                continue
            obj.apply(rid, props)
            results.append(self._result(obj, rid))
        return _multi(obj, results, missing)

    def _read(self, obj: ObjectType, inputs: list[Any], body: Any) -> tuple[int, Any]:
        results, missing = [], []
        for item in inputs:
            rid = obj.find(body.get("idProperty"), item.get("id"))
            if rid is None:
                missing.append(str(item.get("id")))
            else:
                results.append(self._result(obj, rid, body.get("properties")))
        return _multi(obj, results, missing)

    def _archive(self, obj: ObjectType, inputs: list[Any], _: Any) -> tuple[int, Any]:
        for item in inputs:
            obj.remove(str(item.get("id")))
            self.associations = [a for a in self.associations if str(item.get("id")) not in
                                 (a[1], a[3])]
        return 204, None

    def _associate(self, from_name: str, to_name: str, body: Any) -> tuple[int, Any]:
        source, target = self._object(from_name), self._object(to_name)
        results, missing = [], []
        for item in (body or {}).get("inputs") or []:
            from_id, to_id = str(item["from"]["id"]), str(item["to"]["id"])
            if from_id not in source.records or to_id not in target.records:
                missing.append(from_id if from_id not in source.records else to_id)
                continue
            link = (source.name, from_id, target.name, to_id)
            if link not in self.associations:
                self.associations.append(link)
            results.append({"fromObjectTypeId": source.type_id, "fromObjectId": int(from_id),
                            "toObjectTypeId": target.type_id, "toObjectId": int(to_id),
                            "labels": []})
        return _multi(target, results, missing)

    def _result(self, obj: ObjectType, rid: str, wanted: list[str] | None = None
                ) -> dict[str, Any]:
        props = obj.records[rid]
        shown = {k: props.get(k) for k in wanted} if wanted else dict(props)
        shown["hs_object_id"] = rid
        return {"id": rid, "properties": shown, "archived": False,
                "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"}


def _invalid(spec: dict[str, Any] | None, name: str, text: str) -> dict[str, Any] | None:
    if spec is None:
        return {"isValid": False, "message": f'Property "{name}" does not exist',
                "error": "PROPERTY_DOESNT_EXIST", "name": name}
    if spec["modificationMetadata"]["readOnlyValue"] and name != "hs_object_id":
        return {"isValid": False, "message": f'"{name}" is a read only property; its value'
                " cannot be set.", "error": "READ_ONLY_VALUE", "name": name}
    if text == "":
        return None
    if spec["type"] == "number" and not re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text):
        return {"isValid": False, "message": f"{text} was not a valid number.",
                "error": "INVALID_LONG", "name": name}
    if spec["type"] == "bool" and text not in ("true", "false"):
        return {"isValid": False, "message": f"{text} was not a valid boolean.",
                "error": "INVALID_BOOLEAN", "name": name}
    if name == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        return {"isValid": False, "message": f"Email address {text} is invalid",
                "error": "INVALID_EMAIL", "name": name}
    return None


def _complete(results: list[Any]) -> dict[str, Any]:
    now = "2026-01-01T00:00:00Z"
    return {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}


def _multi(obj: ObjectType, results: list[Any], missing: list[str]) -> tuple[int, Any]:
    body = _complete(results)
    if not missing:
        return 200, body
    body["numErrors"] = 1
    body["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                       "message": f"Could not get some {obj.singular} objects, they may be"
                       " deleted or not exist. Check that ids are valid.",
                       "context": {"ids": missing}}]
    return 207, body


def main() -> None:
    """Serve one portal until killed; prints its URL (the benchmark runs it apart, so its
    CPU is not the measured process's)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--rate-limit", type=float, nargs=2, metavar=("REQUESTS", "SECONDS"))
    args = parser.parse_args()
    limit = (int(args.rate_limit[0]), args.rate_limit[1]) if args.rate_limit else None
    fake = HubSpotFake(rate_limit=limit, daily_limit=10**9)
    fake.add_custom_object("bench", [prop("key", "number", "number", unique=True)] + [
        prop(f"c{i}") for i in range(8)])
    fake.start()
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
