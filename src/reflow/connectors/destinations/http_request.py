"""Census HTTP Request destination: Liquid-templated HTTP calls, one per record or one
per group of records.

Per-sync settings (endpoint, method, payload template, records per request, rate limit)
live in the connection config for now: ``WriteContext`` carries only the object name and
fields, so a sync cannot bring its own. The object is a single fixed one, ``request``;
the sync's object name is only a label.

Responses (Census §2.4): 2xx accepts every record of the request; another 4xx than 429
rejects each of them with the status and body as reason; 429, 5xx and network errors are
retried ``max_retries`` times with exponential backoff, honouring ``Retry-After``, then
raise ``TransientError``. Requests go through a token bucket (``rate_limit_per_second``)
and a pool of ``concurrency`` threads. Templates are parsed when the config is validated.

The sending core (``TokenBucket``, ``Sender``) is shared with the webhook destination.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import pyarrow as pa
import tenacity
from liquid import Environment, StrictUndefined
from liquid.exceptions import LiquidError, UndefinedError
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

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
    run_steps,
)
from reflow.connectors.errors import TerminalError, TransientError

Clock = Callable[[], float]
Sleep = Callable[[float], None]
#: Longest wait we sit through inside a write; a longer Retry-After goes to the engine.
MAX_WAIT_SECONDS = 60.0
_REASON_LIMIT = 2000


# --- Liquid -------------------------------------------------------------------------


class _JsonStr(str):
    """A string value JSON-escaped for use inside a JSON string literal, as Census does
    in JSON payload mode; ``original`` is what the ``json``/``sha256``/``base64`` see."""

    original: str

    def __new__(cls, value: str) -> _JsonStr:
        obj = super().__new__(cls, json.dumps(value, ensure_ascii=False)[1:-1])
        obj.original = value
        return obj


def _plain(value: Any) -> Any:
    if isinstance(value, _JsonStr):
        return value.original
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return _JsonStr(value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def json_default(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _pick(value: Any, keys: tuple[Any, ...], keep: bool) -> dict[str, Any]:
    names = {k for key in keys for k in (key if isinstance(key, list | dict) else [key])}
    return {k: v for k, v in dict(value).items() if (k in names) == keep}


def _make_env() -> Environment:
    env = Environment(undefined=StrictUndefined)
    env.filters["json"] = lambda v: json.dumps(_plain(v), default=json_default)
    env.filters["sha256"] = lambda v: hashlib.sha256(str(_plain(v)).encode()).hexdigest()
    env.filters["base64"] = lambda v: base64.b64encode(str(_plain(v)).encode()).decode()
    env.filters["only"] = lambda v, *keys: _pick(v, keys, True)
    env.filters["except"] = lambda v, *keys: _pick(v, keys, False)
    env.filters["keys"] = lambda v: list(dict(v))
    return env


LIQUID = _make_env()


def parse_template(source: str) -> Any:
    """Parse a Liquid template, or raise ValueError naming the line and column (1-based)."""
    try:
        return LIQUID.from_string(source)
    except LiquidError as exc:
        context = exc.context()
        if context is None:  # e.g. a missing end tag: the problem is at the end
            lines = source.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
        else:
            line, column = context[0], context[1] + 1
        raise ValueError(
            f"invalid Liquid template at line {line}, column {column}: {exc.message}"
        ) from None


# --- config ---------------------------------------------------------------------------


class Header(BaseModel):
    name: str = Field(title="Header", description="HTTP header name.")
    value: SecretStr = Field(title="Value", description="Header value.")
    is_secret: bool = Field(
        default=False, title="Secret?", description="Hide the value when reading it back."
    )


class HttpRequestConfig(ConnectorConfig):
    base_url: str = Field(title="Base URL", description="e.g. https://api.brevo.com")
    auth_mode: Literal["manual"] = Field(
        default="manual", title="Authorization Type",
        description="Only manual (headers) is supported; OAuth is not.",
    )
    headers: list[Header] = Field(
        default_factory=list, title="Headers", description="Headers sent on every request."
    )
    http_endpoint: str = Field(
        default="", title="Request endpoint",
        description="Liquid path appended to the base URL, e.g. /v3/contacts/{{ record['id'] }}",
    )
    http_method: Literal["POST", "PUT", "PATCH", "DELETE", "GET"] = Field(
        default="POST", title="Request method", description="HTTP method of each request."
    )
    records_per_request: Literal["one", "multiple"] = Field(
        default="one", title="Records per request",
        description="one: templates see `record`; multiple: templates see `records`.",
    )
    batch_size: int = Field(
        default=100, ge=1, le=10_000, title="Batch size",
        description="Records per request in multiple-records mode.",
    )
    payload_type: Literal["empty", "json", "url_encoded"] = Field(
        default="json", title="Payload type", description="Body encoding."
    )
    body_template: str | None = Field(
        default=None, title="Payload template",
        description="Liquid template of the body; unset sends the mapped columns as JSON.",
    )
    rate_limit_per_second: float | None = Field(
        default=None, gt=0, title="Rate limit",
        description="Requests per second; unset for as fast as possible (429s still honoured).",
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

    @field_validator("http_endpoint", "body_template")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value:
            parse_template(value)
        return value

    @model_validator(mode="after")
    def _form_needs_template(self) -> HttpRequestConfig:
        multiple = self.records_per_request == "multiple"
        if self.payload_type == "url_encoded" and multiple and not self.body_template:
            raise ValueError("a URL-encoded payload of multiple records needs body_template")
        return self

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


# --- sending core -----------------------------------------------------------------------


class TokenBucket:
    """Requests-per-second limiter shared by the sending threads."""

    def __init__(self, rate: float | None, *, clock: Clock, sleep: Sleep) -> None:
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.capacity = max(1.0, rate or 1.0)
        self._tokens, self._last = self.capacity, clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self.rate is None:
            return
        while True:
            with self._lock:
                now = self.clock()
                elapsed = max(0.0, now - self._last)
                self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # float dust must not make us spin
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                wait = max(1e-3, (1 - self._tokens) / self.rate)
            self.sleep(wait)


@dataclass
class Request:
    method: str
    url: str
    content: bytes | None
    headers: dict[str, str]
    #: Indices, within the written batch, of the records this request carries.
    indices: list[int]


class _Retry(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:  # the HTTP-date form
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _wait(state: tenacity.RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Retry) and exc.retry_after is not None:
        return exc.retry_after
    return min(MAX_WAIT_SECONDS, 2.0 ** (state.attempt_number - 1))


def _hint_too_long(state: tenacity.RetryCallState) -> bool:
    exc = state.outcome.exception() if state.outcome else None
    return isinstance(exc, _Retry) and (exc.retry_after or 0) > MAX_WAIT_SECONDS


def describe(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:_REASON_LIMIT]}"


class Sender:
    """Sends requests with the rate limit, the thread pool and Census's retry rules."""

    def __init__(self, client: httpx.Client, *, bucket: TokenBucket, max_retries: int,
                 concurrency: int, sleep: Sleep) -> None:
        self.client, self.bucket, self.sleep = client, bucket, sleep
        self.max_retries, self.concurrency = max_retries, concurrency

    def send_all(self, requests: Sequence[Request]) -> list[RejectedRecord]:
        if self.concurrency == 1 or len(requests) <= 1:
            results = [self.send(r) for r in requests]
        else:
            with ThreadPoolExecutor(self.concurrency) as pool:
                futures = [pool.submit(self.send, r) for r in requests]
                # .result() re-raises the first TransientError/TerminalError after all ran.
                results = [f.result() for f in futures]
        return [rejected for result in results for rejected in result]

    def send(self, request: Request) -> list[RejectedRecord]:
        response = self._with_retries(request)
        if response.is_success:
            return []
        reason = describe(response)
        return [RejectedRecord(i, reason) for i in request.indices]

    def _with_retries(self, request: Request) -> httpx.Response:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1) | _hint_too_long,
            wait=_wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, request)
        except _Retry as exc:
            raise TransientError(
                f"{request.method} {request.url} failed after retries: {exc}",
                retry_after=exc.retry_after,
            ) from exc

    def _attempt(self, request: Request) -> httpx.Response:
        self.bucket.acquire()
        try:
            response = self.client.request(
                request.method, request.url, content=request.content, headers=request.headers
            )
        except httpx.TransportError as exc:  # timeouts, refused connections: like a 5xx
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or not (200 <= response.status_code < 500):
            hint = retry_after_seconds(response.headers.get("Retry-After"))
            raise _Retry(describe(response), hint)
        return response


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
    def __init__(self, config: HttpRequestConfig, sender: Sender) -> None:
        self.config, self.sender = config, sender
        self.endpoint = parse_template(config.http_endpoint)
        self.body = parse_template(config.body_template) if config.body_template else None
        self.headers = {h.name: h.value.get_secret_value() for h in config.headers}

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        if action == "delete":
            raise TerminalError("http_request sends added or changed records; no removal trigger")
        rows = batch.to_pylist()
        size = 1 if self.config.records_per_request == "one" else self.config.batch_size
        requests, rejected = [], []
        for start in range(0, len(rows), size):
            indices = list(range(start, min(start + size, len(rows))))
            try:
                requests.append(self._request(rows, indices))
            except _Reject as exc:
                rejected += [RejectedRecord(i, str(exc)) for i in indices]
        rejected += self.sender.send_all(requests)
        return WriteResult(sorted(rejected, key=lambda r: r.index))

    def _request(self, rows: list[dict[str, Any]], indices: list[int]) -> Request:
        chosen = [rows[i] for i in indices]
        one = self.config.records_per_request == "one"
        path = self._render(self.endpoint, chosen, one)
        url = self.config.base_url.rstrip("/") + path if path else self.config.base_url
        headers = dict(self.headers)
        content = self._content(chosen, one, headers)
        return Request(self.config.http_method, url, content, headers, indices)

    def _content(
        self, rows: list[dict[str, Any]], one: bool, headers: dict[str, str]
    ) -> bytes | None:
        kind = self.config.payload_type
        if kind == "empty":
            return None
        if kind == "url_encoded":
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            if self.body is not None:
                return self._render(self.body, rows, one).encode()
            return urlencode({k: "" if v is None else v for k, v in rows[0].items()}).encode()
        headers.setdefault("Content-Type", "application/json")
        if self.body is None:
            value = rows[0] if one else rows
            return json.dumps(value, default=json_default, ensure_ascii=False).encode()
        return _json_body(self._render(self.body, [_escaped(r) for r in rows], one))

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
        self.sender.client.close()


class HttpRequestDestination(DestinationConnector):
    service_name = "http_request"
    label = "HTTP Request"
    documentation_slug = "http-request"
    config_model = HttpRequestConfig
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
            with self._client() as client:
                response = client.head(self.config.base_url)
            if response.status_code in (401, 403):
                raise TerminalError(describe(response))

        return run_steps([("Verify connectivity", connectivity)])

    def list_objects(self) -> list[DestinationObject]:
        label = f"{self.config.http_method} {self.config.base_url}{self.config.http_endpoint}"
        return [DestinationObject(self.OBJECT, label, self.capabilities.operations,
                                  allow_custom_fields=True)]

    def open_writer(self, ctx: WriteContext) -> HttpRequestWriter:
        sender = Sender(self._client(), bucket=self.bucket, max_retries=self.config.max_retries,
                        concurrency=self.config.concurrency, sleep=self.sleep)
        return HttpRequestWriter(self.config, sender)

    def _client(self) -> httpx.Client:
        headers = {h.name: h.value.get_secret_value() for h in self.config.headers}
        limits = httpx.Limits(max_connections=self.config.concurrency)
        return httpx.Client(headers=headers, timeout=self.config.timeout_seconds,
                            limits=limits, follow_redirects=True)
