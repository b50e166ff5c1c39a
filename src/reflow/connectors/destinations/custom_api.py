"""Census Custom Destination API: a user's HTTP service speaking JSON-RPC 2.0.

Reflow is the client. Every call is one ``POST`` of one JSON-RPC request (``params``
always an object, a fresh 32-hex ``id``) to the configured URL; the six methods are
``test_connection``, ``list_objects``, ``list_fields``, ``supported_operations``,
``get_sync_speed`` and ``sync_batch``.

Failures are typed by channel (Census' §1.12):

* transport failures (connect errors, timeouts, HTTP 429/5xx) -> ``TransientError``,
  honouring ``Retry-After``;
* HTTP 4xx and malformed replies -> ``TerminalError`` (retrying the same call cannot help);
* a JSON-RPC ``error`` object -> ``TerminalError`` carrying its ``code`` and ``message``,
  except in ``sync_batch`` where it rejects that batch's records (they are retried next
  run, the run goes on);
* per-record ``success: false`` (or no result at all) -> ``RejectedRecord``.

Two kinds of class live here: ``custom_api`` itself (URL and headers in its credentials)
and the classes :func:`define_custom_type` makes for destination types registered with
``POST /connectors`` (URL and header templates from the type, values from credentials).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
from pydantic import BaseModel, Field, SecretStr, create_model, field_validator

from reflow.connectors.base import (
    Action,
    BatchWriter,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationConnector,
    DestinationField,
    DestinationObject,
    RejectedRecord,
    TestStep,
    WriteContext,
    WriteResult,
)
from reflow.connectors.errors import ObjectNotFound, TerminalError, TransientError
from reflow.connectors.outbound import http_url

if TYPE_CHECKING:  # imported where used: httpx costs every process importing this ~10 MB
    import httpx

USER_AGENT = "Reflow (Census Custom Destination API client)"
#: Census caps ``maximum_parallel_batches`` at 50 (§1.10).
MAX_PARALLEL = 50
_OPERATIONS = ("upsert", "insert", "update", "mirror")


class CustomHeader(BaseModel):
    value: str | None = None
    is_secret: bool = False


class CustomApiConfig(ConnectorConfig):
    webhook_url: str = Field(
        title="API URL",
        description="The JSON-RPC endpoint; may carry a secret in its query string.",
    )
    api_version: int = Field(default=1, title="API Version", description="Protocol version (1).")
    custom_headers: dict[str, CustomHeader] = Field(
        default_factory=dict,
        title="Custom headers",
        description='Header name -> {"value": ..., "is_secret": bool}, sent on every call.',
    )
    auth_token: SecretStr | None = Field(
        default=None, title="Auth Token", description="Sent as `Authorization: Bearer <token>`."
    )
    timeout_seconds: float = Field(
        default=300.0, gt=0, title="Timeout", description="Per-call timeout in seconds."
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only version 1 of the Custom Destination API exists")
        return value

    def connection_details(self) -> dict[str, Any]:
        return {
            "webhook_url": mask_query(self.webhook_url),
            "api_version": self.api_version,
            "custom_headers": {
                name: {"value": None if h.is_secret else h.value, "is_secret": h.is_secret}
                for name, h in self.custom_headers.items()
            },
        }

    def identifying_value(self) -> str | None:
        return urlsplit(self.webhook_url).hostname


def check_url(value: str) -> str:
    return str(http_url(value))


def mask_query(url: str) -> str:
    """The URL with every query value replaced: Census' URLs carry secrets there."""
    parts = urlsplit(url)
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class RpcClient:
    """One JSON-RPC 2.0 exchange per POST; thread-safe (httpx.Client is)."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout: float) -> None:
        from reflow.connectors.outbound_http import outbound_client

        self.url = url
        self.http = outbound_client(
            timeout=timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "*/*", **headers},
        )
        self.rate_limit: float | None = None
        #: Census's default connection-wide cap is 50,000 requests per second.
        self.requests = _Pacer(50_000)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``result`` object; raises ``RpcError`` for a JSON-RPC ``error``."""
        import httpx

        request_id = uuid.uuid4().hex
        self.requests.take(1)
        body = {"jsonrpc": "2.0", "method": method, "id": request_id, "params": params or {}}
        try:
            response = self.http.post(
                self.url,
                content=json.dumps(body, default=_json_default),
                headers={"Content-Type": "application/json"},
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"{method}: the custom API timed out ({exc})") from None
        except httpx.HTTPError as exc:
            raise TransientError(f"{method}: cannot reach the custom API ({exc})") from None
        self._note_rate_limit(response)
        return _reply(method, request_id, response)

    def _note_rate_limit(self, response: httpx.Response) -> None:
        """``X-RateLimit-Limit`` (requests per second for the whole connection) replaces
        the current limit; an absent or unparsable header keeps it."""
        raw = response.headers.get("x-ratelimit-limit")
        with contextlib.suppress(ValueError):
            if raw:
                self.rate_limit = float(raw)
                self.requests.per_second = self.rate_limit if self.rate_limit > 0 else None

    def close(self) -> None:
        self.http.close()


class RpcError(TerminalError):
    """The server answered with a JSON-RPC ``error`` object."""

    def __init__(self, method: str, code: Any, message: str) -> None:
        super().__init__(f"{method}: JSON-RPC error {code}: {message}")
        self.code = code
        self.rpc_message = message


def _reply(method: str, request_id: str, response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    snippet = response.text[:300].strip()
    if status == 429 or status >= 500:
        raise TransientError(
            f"{method}: the custom API answered HTTP {status}: {snippet}",
            retry_after=_retry_after(response),
        )
    if status >= 400:
        raise TerminalError(f"{method}: the custom API answered HTTP {status}: {snippet}")
    try:
        body = response.json()
    except ValueError:
        raise TerminalError(f"{method}: the reply is not JSON: {snippet!r}") from None
    if not isinstance(body, dict) or body.get("id") != request_id:
        raise TerminalError(f"{method}: the reply is not a JSON-RPC response to this request")
    error = body.get("error")
    if isinstance(error, dict):
        raise RpcError(method, error.get("code"), str(error.get("message", "")))
    result = body.get("result")
    if not isinstance(result, dict):
        raise TerminalError(f"{method}: the reply has neither a result object nor an error")
    return result


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return _utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot send a {type(value).__name__} value")


def _utc(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="seconds" if not value.microsecond else "microseconds") + "Z"


def encode(value: Any, field_type: str) -> Any:
    """A value as the protocol puts it on the wire for the field's type (§1.8)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [encode(v, field_type) for v in value]
    if field_type == "decimal":
        return str(value)
    if field_type == "date_time" and isinstance(value, dt.datetime):
        return _utc(value)
    if field_type == "date" and isinstance(value, dt.date):
        return value.isoformat()
    if field_type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _wire_field(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "field_api_name": str(raw["field_api_name"]),
        "label": str(raw.get("label") or raw["field_api_name"]),
        "identifier": bool(raw.get("identifier", False)),
        "required": bool(raw.get("required", False)),
        "createable": bool(raw.get("createable", True)),
        "updateable": bool(raw.get("updateable", True)),
        "type": str(raw.get("type") or "string"),
        "array": bool(raw.get("array", False)),
    }


def _to_field(wire: Mapping[str, Any]) -> DestinationField:
    return DestinationField(
        full_name=wire["field_api_name"],
        label=wire["label"],
        type=wire["type"] + ("[]" if wire["array"] else ""),
        createable=wire["createable"],
        updateable=wire["updateable"],
        required=wire["required"],
        identifier=wire["identifier"],
    )


class CustomApiDestination(DestinationConnector):
    """``custom_api``: URL, token and headers come from the connection's credentials."""

    service_name = "custom_api"
    label = "Custom API"
    documentation_slug = "custom-api"
    config_model: ClassVar[type[ConnectorConfig]] = CustomApiConfig
    capabilities = DestinationCapabilities(
        operations=_OPERATIONS, batch_size=10_000, max_concurrency=1
    )

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        self._rpc: RpcClient | None = None

    # -- what a registered type overrides ------------------------------------------------
    def endpoint(self) -> str:
        return self.config.webhook_url  # type: ignore[attr-defined]

    def headers(self) -> dict[str, str]:
        config: CustomApiConfig = self.config  # type: ignore[assignment]
        out = {k: h.value for k, h in config.custom_headers.items() if h.value is not None}
        if config.auth_token is not None:
            out["Authorization"] = f"Bearer {config.auth_token.get_secret_value()}"
        return out

    def timeout(self) -> float:
        return float(getattr(self.config, "timeout_seconds", 300.0))

    # -- the contract --------------------------------------------------------------------
    @property
    def rpc(self) -> RpcClient:
        if self._rpc is None:
            self._rpc = RpcClient(self.endpoint(), self.headers(), self.timeout())
        return self._rpc

    def test_connection(self) -> list[TestStep]:
        try:
            result = self.rpc.call("test_connection")
        except Exception as exc:  # the system's own message is the point
            return [TestStep("Verify connectivity", "failed", str(exc))]
        if result.get("success") is True:
            return [TestStep("Verify connectivity", "success")]
        message = result.get("error_message") or "test_connection reported success: false"
        return [TestStep("Verify connectivity", "failed", str(message))]

    def list_objects(self) -> list[DestinationObject]:
        return [self._describe(raw) for raw in self._raw_objects()]

    def get_object(self, full_name: str) -> DestinationObject:
        return self._describe(self._raw_object(full_name))

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        raw = self._raw_object(ctx.object_name)
        fields = {f["field_api_name"]: f for f in self._fields(raw)}
        speed = self.rpc.call("get_sync_speed")
        return CustomApiWriter(self.rpc, ctx, raw, fields, speed)

    def close(self) -> None:
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None

    # -- helpers -------------------------------------------------------------------------
    def _raw_objects(self) -> list[dict[str, Any]]:
        objects = self.rpc.call("list_objects").get("objects")
        if not isinstance(objects, list):
            raise TerminalError("list_objects: result.objects is not a list")
        return [o for o in objects if isinstance(o, dict) and o.get("object_api_name")]

    def _raw_object(self, full_name: str) -> dict[str, Any]:
        for raw in self._raw_objects():
            if str(raw["object_api_name"]) == full_name:
                return raw
        raise ObjectNotFound(f"object {full_name!r} not found in the custom API's list_objects")

    def _fields(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        fields = self.rpc.call("list_fields", {"object": raw}).get("fields")
        if not isinstance(fields, list):
            raise TerminalError("list_fields: result.fields is not a list")
        try:
            return [_wire_field(f) for f in fields]
        except (KeyError, TypeError) as exc:
            raise TerminalError(f"list_fields: a field lacks {exc}") from None

    def _describe(self, raw: dict[str, Any]) -> DestinationObject:
        ops = self.rpc.call("supported_operations", {"object": raw}).get("operations") or []
        known = tuple(o for o in _OPERATIONS if o in ops)
        return DestinationObject(
            full_name=str(raw["object_api_name"]),
            label=str(raw.get("label") or raw["object_api_name"]),
            supported_operations=known,
            fields=tuple(_to_field(f) for f in self._fields(raw)),
            allow_custom_fields=raw.get("can_create_fields") == "on_write",
        )


class _Pacer:
    """Records-per-second limit across the parallel batches of one writer."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second if per_second and per_second > 0 else None
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def take(self, records: int) -> None:
        if self.per_second is None:
            return
        with self._lock:
            start = max(self._next, time.monotonic())
            self._next = start + records / self.per_second
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class CustomApiWriter(BatchWriter):
    def __init__(
        self,
        rpc: RpcClient,
        ctx: WriteContext,
        raw_object: dict[str, Any],
        fields: dict[str, dict[str, Any]],
        speed: dict[str, Any],
    ) -> None:
        self.rpc, self.ctx, self.object = rpc, ctx, raw_object
        self.fields = fields
        self.batch_size = max(1, int(speed.get("maximum_batch_size") or 1000))
        self.parallel = min(MAX_PARALLEL, max(1, int(speed.get("maximum_parallel_batches") or 1)))
        self.pacer = _Pacer(_number(speed.get("maximum_records_per_second")))
        self.pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="custom-api")
        self.pipeline_depth = 2 * self.parallel  # batches in flight (BatchWriter.submit)
        self.cuts_requests = True

    def _field(self, name: str) -> dict[str, Any]:
        # A field the object accepts on write (can_create_fields) but did not list.
        return self.fields.get(name) or _wire_field({"field_api_name": name})

    def _plan(self, operation: str, columns: list[str]) -> dict[str, Any]:
        return {
            "object": self.object,
            "operation": operation,
            "sync_run_id": self.ctx.run_id,
            "sync_id": self.ctx.sync_id,
            "schema": {
                name: {"active_identifier": name == self.ctx.key_field, "field": self._field(name)}
                for name in columns
            },
        }

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        return self.submit(batch, action).result()

    def submit(self, batch: pa.RecordBatch, action: Action) -> Future[WriteResult]:
        """The batch's chunks queued on the writer's pool; the next batch's chunks queue
        behind them instead of waiting (see ``BatchWriter.submit``)."""
        from reflow.connectors.destinations._sending import as_write_result, gather

        columns = list(batch.schema.names)
        if action == "delete":
            columns = [self.ctx.key_field]
        plan = self._plan(action, columns)
        types = {name: self._field(name)["type"] for name in columns}
        records = [
            {name: encode(row.get(name), types[name]) for name in columns}
            for row in batch.to_pylist()
        ]
        chunks = [
            list(range(start, min(start + self.batch_size, len(records))))
            for start in range(0, len(records), self.batch_size)
        ]
        return as_write_result(gather([self.pool.submit(self._send, plan, records, chunk)
                                       for chunk in chunks]))

    def _send(
        self, plan: dict[str, Any], records: list[dict[str, Any]], indices: list[int]
    ) -> list[RejectedRecord]:
        self.pacer.take(len(indices))
        try:
            result = self.rpc.call(
                "sync_batch", {"sync_plan": plan, "records": [records[i] for i in indices]}
            )
        except RpcError as exc:
            return [RejectedRecord(i, str(exc)) for i in indices]
        return _attribute(result, records, indices, self.ctx.key_field)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _attribute(
    result: dict[str, Any], records: list[dict[str, Any]], indices: list[int], key: str
) -> list[RejectedRecord]:
    """Match results to records by identifier value, not position; a record without a
    successful result failed (Census: anything not reported successful is retried)."""
    outcome: dict[str, tuple[bool, str | None]] = {}
    for item in result.get("record_results") or []:
        if isinstance(item, dict) and "identifier" in item:
            outcome[_ident(item["identifier"])] = (
                item.get("success") is True,
                item.get("error_message"),
            )
    rejected = []
    for i in indices:
        success, message = outcome.get(_ident(records[i].get(key)), (False, None))
        if not success:
            reason = message or "the custom API returned no successful result for this record"
            rejected.append(RejectedRecord(i, str(reason)))
    return rejected


def _ident(value: Any) -> str:
    # 42, 42.0 and "42" name the same record whichever JSON type the server echoes.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# -- destination types registered with POST /connectors ---------------------------------

_FIELD_TYPES: dict[str, Any] = {"string": str, "boolean": bool, "integer": int, "float": float}


def config_model_for(definition: Mapping[str, Mapping[str, Any]]) -> type[ConnectorConfig]:
    """A credentials model built from a ``configuration_definition``."""
    spec: dict[str, Any] = {}
    for key, item in definition.items():
        py_type: Any = SecretStr if item.get("secret") else _FIELD_TYPES[item.get("type", "string")]
        required = bool(item.get("required"))
        default = ... if required else item.get("default")
        if not required:
            py_type = py_type | None
        spec[key] = (
            py_type,
            Field(default, title=item.get("label") or key, description=item.get("placeholder")),
        )
    return create_model("RegisteredTypeConfig", __base__=ConnectorConfig, **spec)


class RegisteredTypeDestination(CustomApiDestination):
    """Base of classes made by :func:`define_custom_type`."""

    endpoint_url: ClassVar[str]
    header_templates: ClassVar[dict[str, str]]

    def endpoint(self) -> str:
        return self.endpoint_url

    def headers(self) -> dict[str, str]:
        from liquid import Template

        values = {
            k: (v.get_secret_value() if isinstance(v, SecretStr) else v)
            for k, v in self.config.model_dump().items()
        }
        values = {k: ("" if v is None else v) for k, v in values.items()}
        return {name: Template(t).render(**values) for name, t in self.header_templates.items()}

    def timeout(self) -> float:
        return 300.0


def define_custom_type(
    *,
    service_name: str,
    label: str,
    configuration_definition: Mapping[str, Mapping[str, Any]],
    url: str,
    headers: Mapping[str, str],
) -> type[DestinationConnector]:
    """A connector class for a registered destination type (JSON-RPC at ``url``)."""
    return type(
        f"Registered_{service_name}",
        (RegisteredTypeDestination,),
        {
            "service_name": service_name,
            "label": label,
            "documentation_slug": service_name,
            "config_model": config_model_for(configuration_definition),
            "endpoint_url": url,
            "header_templates": dict(headers),
        },
    )
