"""Census Webhook destination (deprecated in Census in favour of HTTP Request; kept so
existing Census configurations keep working).

Records are sent in Census's documented envelope (§3.3)::

    {"api_version": 1, "operation": "changed" | "deleted", "sync_run_at": "...Z",
     "connection_name": ..., "model_name": null, "schema_name": null, "table_name": null,
     "sync_configuration_id": <sync id>, "sync_configuration_name": null,
     "data": [records] (bulk) | {record} (one per request)}

or, with ``wrap_data_objects`` off, only ``data``. Each record carries every mapped column
plus the sync key under ``unique_id``; a ``delete`` sends only ``unique_id`` unless
``send_full_record_on_deletes``, the one per-sync option Census documents for webhooks
(``WebhookSyncOptions``, in the sync's ``advanced_configuration``; the connection's value
of the same key is the default for its syncs, as before). Every other setting is the
connection's (reference §3.1). ``model_name``/``schema_name``/``table_name``/
``sync_configuration_name`` are null because ``WriteContext`` does not carry them.

Signing: Census documents none for this destination. When ``signing_secret`` is set,
every attempt (a retry too) is signed when it is sent (``webhook_signing``):
``X-Reflow-Timestamp`` and ``X-Reflow-Signature: t=...,v1=hex(HMAC-SHA256(secret,
"<t>.<body>"))``, plus the Census-style ``X-Signature`` = ``base64(HMAC-SHA256(secret,
raw request body))`` kept for existing receivers. Responses and retries follow the HTTP
Request rules (2xx accepted, 4xx rejected, 429/5xx retried), sharing its sending core.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from reflow.connectors.base import (
    Action,
    BatchWriter,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationConnector,
    DestinationObject,
    TestStep,
    WriteContext,
    WriteResult,
    options_error,
    run_steps,
)
from reflow.connectors.destinations._sending import (
    Clock,
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
from reflow.connectors.webhook_signing import (
    LEGACY_SIGNATURE_HEADER,
    sign_body,
    signature_headers,
)

SIGNATURE_HEADER = LEGACY_SIGNATURE_HEADER


class WebhookConfig(ConnectorConfig):
    url: str = Field(title="Webhook URL", description="Receives the records; must accept HEAD.")
    use_bulk_upload: bool = Field(
        default=True, title="Use Bulk Uploads",
        description="Send `data` as an array of up to batch_size records.",
    )
    batch_size: int = Field(
        default=1, ge=1, le=10_000, title="Batch Size (If Using Bulk Upload)",
        description="Records per request when bulk uploads are on.",
    )
    wrap_data_objects: bool = Field(
        default=True, title="Wrap Data Objects", description="Send the metadata envelope."
    )
    auth_token: SecretStr | None = Field(
        default=None, title="Auth Token", description="Sent verbatim (no prefix) when set."
    )
    auth_token_header: str = Field(
        default="Authorization", title="Auth Token Header",
        description="Header that carries the auth token.",
    )
    signing_secret: SecretStr | None = Field(
        default=None, title="Signing secret",
        description="When set, each request is signed: X-Reflow-Signature (t=<unix time>,"
        "v1=hex HMAC-SHA256 of '<t>.<body>') and X-Signature (base64 HMAC of the body).",
    )
    rate_limit: float = Field(
        default=30.0, gt=0, title="Rate limit", description="Requests per second."
    )
    http_method: Literal["POST", "PUT", "PATCH"] = Field(
        default="POST", title="HTTP Method", description="Method of each request."
    )
    connection_name: str | None = Field(
        default=None, title="Connection name", description="`connection_name` in the envelope."
    )
    send_full_record_on_deletes: bool = Field(
        default=False, title="Send full record on deletes?",
        description="Default for syncs that do not set it: deleted records carry every "
        "column instead of only unique_id.",
    )
    concurrency: int = Field(
        default=1, ge=1, le=64, title="Concurrency", description="Requests in flight at once."
    )
    max_retries: int = Field(
        default=7, ge=0, le=20, title="Retries", description="Retries of a 429/5xx request."
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, title="Timeout", description="Per-request timeout in seconds."
    )

    _url_is_http = field_validator("url")(http_url)


class WebhookSyncOptions(BaseModel):
    """A webhook sync's own setting (reference §3.3: "the sync's advanced option")."""

    model_config = ConfigDict(extra="allow")

    send_full_record_on_deletes: bool | None = Field(
        default=None, title="Send full record on deletes?",
        description="Deleted records carry every column instead of only unique_id; unset "
        "uses the connection's setting (off unless set there).",
    )


def sign(secret: str, body: bytes) -> str:
    return sign_body(secret, body)


class WebhookWriter(BatchWriter):
    def __init__(self, config: WebhookConfig, ctx: WriteContext, sender: Sender,
                 started_at: datetime, *, full_deletes: bool = False) -> None:
        self.config, self.ctx, self.sender = config, ctx, sender
        self.sync_run_at = started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.full_deletes = full_deletes

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        return by_index(self.sender.send_all(self._requests(batch, action)))

    def submit(self, batch: pa.RecordBatch, action: Action) -> Future[WriteResult]:
        return as_write_result(self.sender.submit_all(self._requests(batch, action)))

    def _requests(self, batch: pa.RecordBatch, action: Action) -> list[Request]:
        deleted = action == "delete"
        records = [self._record(row, deleted) for row in json_rows(batch)]
        size = self.config.batch_size if self.config.use_bulk_upload else 1
        requests = []
        for start in range(0, len(records), size):
            indices = list(range(start, min(start + size, len(records))))
            requests.append(self._request(records[start:start + size], indices, deleted))
        return requests

    def _record(self, row: dict[str, Any], deleted: bool) -> dict[str, Any]:
        key = row.get(self.ctx.key_field)
        if deleted and not self.full_deletes:
            return {"unique_id": key}
        if self.ctx.keep_on_null:  # sync_null_values: false leaves the null out
            row = {k: v for k, v in row.items() if v is not None or k not in self.ctx.keep_on_null}
        return {"unique_id": key, **row}

    def _request(self, records: list[dict[str, Any]], indices: list[int],
                 deleted: bool) -> Request:
        data: Any = records if self.config.use_bulk_upload else records[0]
        payload = self._envelope(data, deleted) if self.config.wrap_data_objects else data
        body = json_bytes(payload)
        headers = {"Content-Type": "application/json"}  # signed per attempt: _client()
        return Request(self.config.http_method, self.config.url, body, headers, indices)

    def _envelope(self, data: Any, deleted: bool) -> dict[str, Any]:
        return {
            "api_version": 1,
            "operation": "deleted" if deleted else "changed",
            "sync_run_at": self.sync_run_at,
            "connection_name": self.config.connection_name,
            "model_name": None,
            "schema_name": None,
            "table_name": None,
            "sync_configuration_id": self.ctx.sync_id,
            "sync_configuration_name": None,
            "data": data,
        }

    def close(self) -> None:
        self.sender.close()


class WebhookDestination(DestinationConnector):
    service_name = "webhook"
    label = "Webhook"
    documentation_slug = "webhook"
    config_model = WebhookConfig
    sync_options_model = WebhookSyncOptions
    capabilities = DestinationCapabilities(
        operations=("upsert", "append", "mirror"), batch_size=1000, sync_null_values=True
    )
    config: WebhookConfig
    #: A Webhook sync has no destination object in Census; this one name stands for it.
    OBJECT = "webhook"

    def __init__(self, config: WebhookConfig, *, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep) -> None:
        super().__init__(config)
        self.sleep = sleep
        self.bucket = TokenBucket(config.rate_limit, clock=clock, sleep=sleep)

    def test_connection(self) -> list[TestStep]:
        def connectivity() -> None:
            # Census: HEAD expecting 200, else one empty POST (receivers must ignore it).
            with self._client() as client:
                head = client.head(self.config.url)
                if head.status_code == 200:
                    return
                post = client.post(self.config.url, content=b"")
            if not post.is_success:
                raise RuntimeError(f"HEAD answered {head.status_code}; POST: {describe(post)}")

        return run_steps([("Verify connectivity", connectivity)])

    def list_objects(self) -> list[DestinationObject]:
        return [DestinationObject(self.OBJECT, "Webhook", self.capabilities.operations,
                                  allow_custom_fields=True)]

    def open_writer(self, ctx: WriteContext, *, now: datetime | None = None) -> WebhookWriter:
        try:
            own = WebhookSyncOptions.model_validate(ctx.options).send_full_record_on_deletes
        except ValidationError as exc:  # stored before validation existed
            raise TerminalError(options_error(exc)) from None
        full = self.config.send_full_record_on_deletes if own is None else own
        sender = Sender(self._client(), bucket=self.bucket, max_retries=self.config.max_retries,
                        concurrency=self.config.concurrency, sleep=self.sleep)
        writer = WebhookWriter(self.config, ctx, sender, now or datetime.now(UTC),
                               full_deletes=full)
        writer.pipeline_depth = 2 * self.config.concurrency  # see HttpRequestWriter
        writer.cuts_requests = True
        return writer

    def _client(self) -> httpx.Client:
        headers = {}
        if self.config.auth_token is not None:
            headers[self.config.auth_token_header] = self.config.auth_token.get_secret_value()
        hooks = [] if self.config.signing_secret is None else [
            _signer(self.config.signing_secret.get_secret_value())]
        return http_client(headers=headers, timeout=self.config.timeout_seconds,
                           concurrency=self.config.concurrency, event_hooks={"request": hooks})


def _signer(secret: str) -> Any:
    """An httpx request hook signing each attempt as it leaves, so a retry carries a
    fresh timestamp a receiver's replay window accepts."""
    def sign_request(request: httpx.Request) -> None:
        if request.method in ("POST", "PUT", "PATCH"):
            request.headers.update(signature_headers(secret, request.content))
    return sign_request
