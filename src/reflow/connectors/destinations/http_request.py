"""Census HTTP Request destination: Liquid-templated HTTP calls, one per record or one
per group of records.

The connection (``HttpRequestConfig``, reference §2.1) holds the base URL, the headers
(secret ones never read back), a connection-wide rate limit and the default concurrency.
Each sync describes its own requests in ``advanced_configuration``
(``HttpRequestSyncOptions``, §2.2): method, endpoint template, records per request,
payload type and template, its own rate limit and concurrency. Connections created
before that carried those keys in their credentials; they are kept as defaults under
each sync's own (``HttpRequestConfig.sync_defaults``). The object is a single fixed one,
``request``; the sync's object name is only a label.

Responses (Census §2.4): 2xx accepts every record of the request; another 4xx than 429
rejects each of them with the status and body as reason; 429, 5xx and network errors are
retried ``max_retries`` times with exponential backoff, honouring ``Retry-After``, then
raise ``TransientError``. Requests go through the connection's token bucket, then the
sync's, and a pool of ``concurrency`` threads. Templates are parsed, and their
``record[...]`` columns checked against the mapped fields, when the sync is validated.

The sending core (``_sending``) and the Liquid dialect (``_liquid``) are shared with the
webhook destination.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import pyarrow as pa
from liquid.exceptions import LiquidError, UndefinedError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from reflow.connectors.base import (
    Action,
    BatchWriter,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationConnector,
    DestinationObject,
    RejectedRecord,
    TestStep,
    WriteContext,
    WriteResult,
    options_error,
    run_steps,
)
from reflow.connectors.destinations._liquid import (
    check_variables,
    escaped,
    parse_template,
)
from reflow.connectors.destinations._sending import (
    Buckets,
    Clock,
    Limiter,
    Request,
    Sender,
    Sleep,
    TokenBucket,
    as_write_result,
    by_index,
    describe,
    http_client,
    json_bytes,
    json_rows,
)
from reflow.connectors.errors import TerminalError
from reflow.connectors.outbound import http_url

# --- connection config ----------------------------------------------------------------


class Header(BaseModel):
    name: str = Field(title="Header", description="HTTP header name.")
    value: SecretStr = Field(title="Value", description="Header value.")
    is_secret: bool = Field(
        default=False, title="Secret?", description="Hide the value when reading it back."
    )


#: Per-request keys that connections stored before syncs carried their own settings;
#: kept as defaults for the syncs of such a connection (see ``sync_defaults``).
LEGACY_SYNC_KEYS = ("http_endpoint", "http_method", "records_per_request", "batch_size",
                    "payload_type", "body_template", "body")


class HttpRequestConfig(ConnectorConfig):
    """The connection (reference §2.1): where requests go and how they authenticate.
    What each request looks like is per sync: ``HttpRequestSyncOptions``."""

    base_url: str = Field(title="Base URL", description="e.g. https://api.brevo.com")
    auth_mode: Literal["manual"] = Field(
        default="manual", title="Authorization Type",
        description="Only manual (headers) is supported; OAuth is not.",
    )
    headers: list[Header] = Field(
        default_factory=list, title="Headers", description="Headers sent on every request."
    )
    rate_limit_per_second: float | None = Field(
        default=None, gt=0, title="Rate limit",
        description="Requests per second across every sync of this connection; unset for "
        "as fast as possible (429s still honoured). A sync can set a lower one of its own.",
    )
    concurrency: int = Field(
        default=1, ge=1, le=64, title="Concurrency",
        description="Requests in flight at once, unless a sync sets its own.",
    )
    max_retries: int = Field(
        default=7, ge=0, le=20, title="Retries", description="Retries of a 429/5xx request."
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, title="Timeout", description="Per-request timeout in seconds."
    )
    #: Per-request settings found in the credentials of an older connection: defaults
    #: under each sync's own ``advanced_configuration``. Not part of the served schema.
    sync_defaults: SkipJsonSchema[dict[str, Any]] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys_become_sync_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(k in data for k in LEGACY_SYNC_KEYS):
            return data
        data = dict(data)
        legacy = {k: data.pop(k) for k in LEGACY_SYNC_KEYS if k in data and data[k] != ""}
        try:
            HttpRequestSyncOptions.model_validate(legacy)
        except ValidationError as exc:
            raise ValueError(options_error(exc, prefix="")) from None
        return {**data, "sync_defaults": legacy}

    _base_url_is_http = field_validator("base_url")(http_url)

    def connection_details(self) -> dict[str, Any]:
        out = super().connection_details()
        out["headers"] = [
            {"name": h.name, "value": None if h.is_secret else h.value.get_secret_value(),
             "is_secret": h.is_secret}
            for h in self.headers
        ]
        return out

    def identifying_value(self) -> str | None:
        return self.base_url


# --- per-sync options ------------------------------------------------------------------

#: Records per request when ``records_per_request`` is ``multiple`` and no batch size is set.
DEFAULT_MULTIPLE_BATCH = 100


class HttpRequestSyncOptions(BaseModel):
    """One sync's requests (reference §2.2), from its ``advanced_configuration``.

    ``http_endpoint``, ``batch_size`` and ``http_method`` are the keys of Census's
    published ``advanced_configuration_field_definitions`` example. ``records_per_request``
    left unset follows ``batch_size``: more than 1 means multiple records per request,
    whose templates see ``records`` (Liquid ``{% for record in records %}``)."""

    model_config = ConfigDict(extra="allow")

    http_method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] = Field(
        default="POST", title="Request method", description="HTTP method of each request."
    )
    batch_size: int = Field(
        default=1, ge=1, le=10_000, title="Batch size",
        description="Records per request; more than 1 sends multiple records per request. "
        f"Unset with records_per_request multiple: {DEFAULT_MULTIPLE_BATCH}.",
    )
    records_per_request: Literal["one", "multiple"] | None = Field(
        default=None, validate_default=True, title="Records per request",
        description="one: templates see `record`; multiple: templates see `records`. "
        "Unset: multiple when batch_size is more than 1.",
    )
    http_endpoint: str = Field(
        default="", title="Request endpoint",
        description="Liquid path appended to the connection's base URL, e.g. "
        "/v3/contacts/{{ record['id'] }}; empty sends to the base URL itself.",
        json_schema_extra={"placeholder": "/users"},
    )
    payload_type: Literal["empty", "json", "url_encoded"] = Field(
        default="json", title="Payload type", description="Body encoding."
    )
    body: str | None = Field(
        default=None, validate_default=True, title="Payload template",
        description="Liquid template of the body; unset sends the mapped fields as JSON.",
        json_schema_extra={"input_type": "textarea",
                           "placeholder": "{\"email\": \"{{ record['email'] }}\"}"},
    )
    rate_limit_per_second: float | None = Field(
        default=None, gt=0, title="Rate limit",
        description="Requests per second for this sync, within the connection's own limit.",
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=64, title="Concurrency",
        description="Requests in flight at once; unset uses the connection's.",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:
        # ``body_template`` is what connections stored before this was per sync.
        if isinstance(data, dict) and "body_template" in data:
            data = dict(data)
            data.setdefault("body", data.pop("body_template"))
        return data

    @field_validator("records_per_request")
    @classmethod
    def _mode(cls, value: str | None, info: ValidationInfo) -> str:
        if value is not None:
            return value
        return "multiple" if info.data.get("batch_size", 1) > 1 else "one"

    @field_validator("http_endpoint", "body")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        one = info.data.get("records_per_request", "one") == "one"
        form = info.data.get("payload_type") == "url_encoded"
        if value:
            fields = (info.context or {}).get("fields")
            check_variables(value, allowed={"record", "records"} if one else {"records"},
                            columns=None if fields is None else set(fields))
        elif info.field_name == "body" and form and not one:
            raise ValueError("a URL-encoded payload of multiple records needs a body template")
        return value or ("" if info.field_name == "http_endpoint" else None)

    @property
    def multiple(self) -> bool:
        return self.records_per_request == "multiple"

    @property
    def records_per_call(self) -> int:
        if not self.multiple:
            return 1
        return self.batch_size if "batch_size" in self.model_fields_set else DEFAULT_MULTIPLE_BATCH


# --- writer and connector ---------------------------------------------------------------


class _Reject(Exception):
    """A request that cannot be built from its records (bad rendered body)."""


_TRAILING_COMMA = re.compile(r",(\s*[\]}])")


def _json_body(text: str) -> bytes:
    try:
        parsed = json.loads(text)
    except ValueError:
        try:  # loops leave trailing commas, which Census's YAML parse tolerates
            parsed = json.loads(_TRAILING_COMMA.sub(r"\1", text))
        except ValueError as exc:
            raise _Reject(f"rendered payload is not valid JSON: {exc}") from exc
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()


class HttpRequestWriter(BatchWriter):
    def __init__(self, config: HttpRequestConfig, options: HttpRequestSyncOptions,
                 sender: Sender) -> None:
        self.config, self.options, self.sender = config, options, sender
        self.endpoint = parse_template(options.http_endpoint)
        #: An endpoint without Liquid is the same URL for every request: rendered once.
        self.fixed_url = None if "{" in options.http_endpoint else self._url(options.http_endpoint)
        self.body = parse_template(options.body) if options.body else None
        self.headers = {h.name: h.value.get_secret_value() for h in config.headers}
        #: Bodies are the records as JSON and nothing renders them with Liquid: the rows
        #: can carry their timestamps as text already (``json_rows``).
        self.plain_json = (options.payload_type == "json" and self.body is None
                           and self.fixed_url is not None)
        # Two batches per request slot: the next batch's requests are queued while the
        # last ones of this batch are in flight, so the connections never go idle.
        self.pipeline_depth = 2 * sender.concurrency
        self.cuts_requests = True

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        requests, rejected = self._requests(batch, action)
        return by_index(rejected + self.sender.send_all(requests))

    def submit(self, batch: pa.RecordBatch, action: Action) -> Future[WriteResult]:
        requests, rejected = self._requests(batch, action)
        return as_write_result(self.sender.submit_all(requests), rejected)

    def _requests(self, batch: pa.RecordBatch,
                  action: Action) -> tuple[list[Request], list[RejectedRecord]]:
        if action == "delete":
            raise TerminalError("http_request sends added or changed records; no removal trigger")
        rows = json_rows(batch) if self.plain_json else batch.to_pylist()
        size = self.options.records_per_call
        requests, rejected = [], []
        for start in range(0, len(rows), size):
            indices = list(range(start, min(start + size, len(rows))))
            try:
                requests.append(self._request(rows, indices))
            except _Reject as exc:
                rejected += [RejectedRecord(i, str(exc)) for i in indices]
        return requests, rejected

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path if path else self.config.base_url

    def _request(self, rows: list[dict[str, Any]], indices: list[int]) -> Request:
        chosen = [rows[i] for i in indices]
        one = not self.options.multiple
        url = self.fixed_url or self._url(self._render(self.endpoint, chosen, one))
        headers = dict(self.headers)
        content = self._content(chosen, one, headers)
        return Request(self.options.http_method, url, content, headers, indices)

    def _content(
        self, rows: list[dict[str, Any]], one: bool, headers: dict[str, str]
    ) -> bytes | None:
        kind = self.options.payload_type
        if kind == "empty":
            return None
        if kind == "url_encoded":
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            if self.body is not None:
                return self._render(self.body, rows, one).encode()
            return urlencode({k: "" if v is None else v for k, v in rows[0].items()}).encode()
        headers.setdefault("Content-Type", "application/json")
        if self.body is None:
            return json_bytes(rows[0] if one else rows)
        return _json_body(self._render(self.body, [escaped(r) for r in rows], one))

    @staticmethod
    def _render(template: Any, rows: list[Any], one: bool) -> str:
        variables = {"record": rows[0], "records": rows} if one else {"records": rows}
        try:
            return template.render(**variables)
        except UndefinedError as exc:  # a column the sync does not map: every record fails
            raise TerminalError(f"template refers to an unknown value: {exc.message}") from exc
        except LiquidError as exc:
            raise _Reject(f"template failed to render: {exc.message}") from exc

    def close(self) -> None:
        self.sender.close()


class HttpRequestDestination(DestinationConnector):
    service_name = "http_request"
    label = "HTTP Request"
    documentation_slug = "http-request"
    config_model = HttpRequestConfig
    sync_options_model = HttpRequestSyncOptions
    capabilities = DestinationCapabilities(operations=("upsert", "append"), batch_size=1000)
    config: HttpRequestConfig
    OBJECT = "request"

    def __init__(self, config: HttpRequestConfig, *, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep) -> None:
        super().__init__(config)
        self.clock, self.sleep = clock, sleep
        # One bucket per connector: every writer of this connection shares the limit.
        self.bucket = TokenBucket(config.rate_limit_per_second, clock=clock, sleep=sleep)

    def test_connection(self) -> list[TestStep]:
        def connectivity() -> None:
            with self._client(self.config.concurrency) as client:
                response = client.head(self.config.base_url)
            if response.status_code in (401, 403):
                raise TerminalError(describe(response))

        return run_steps([("Verify connectivity", connectivity)])

    def list_objects(self) -> list[DestinationObject]:
        label = f"HTTP request to {self.config.base_url}"
        return [DestinationObject(self.OBJECT, label, self.capabilities.operations,
                                  allow_custom_fields=True)]

    def sync_options(self, ctx: WriteContext) -> HttpRequestSyncOptions:
        """The sync's options over the connection's legacy defaults."""
        try:
            return HttpRequestSyncOptions.model_validate(
                {**self.config.sync_defaults, **ctx.options}
            )
        except ValidationError as exc:  # stored before validation existed, or edited by hand
            raise TerminalError(options_error(exc)) from None

    def open_writer(self, ctx: WriteContext) -> HttpRequestWriter:
        options = self.sync_options(ctx)
        concurrency = options.concurrency or self.config.concurrency
        bucket: Limiter = self.bucket
        if options.rate_limit_per_second is not None:
            own = TokenBucket(options.rate_limit_per_second, clock=self.clock, sleep=self.sleep)
            bucket = Buckets(self.bucket, own)
        sender = Sender(self._client(concurrency), bucket=bucket,
                        max_retries=self.config.max_retries, concurrency=concurrency,
                        sleep=self.sleep)
        return HttpRequestWriter(self.config, options, sender)

    def _client(self, concurrency: int) -> httpx.Client:
        headers = {h.name: h.value.get_secret_value() for h in self.config.headers}
        # Redirects are followed, each hop through the outbound address policy.
        return http_client(headers=headers, timeout=self.config.timeout_seconds,
                           concurrency=concurrency, follow_redirects=True)
