"""The sending core of the HTTP destinations (HTTP Request, Webhook): a requests-per-second
token bucket, and a sender that runs requests on a thread pool with Census's response
rules (reference §2.4): 2xx accepted; another 4xx than 429 rejects the request's records;
429, 5xx and network errors retried ``max_retries`` times with exponential backoff,
honouring ``Retry-After``, then ``TransientError``.

The sender's pool lives as long as its writer, so the requests of the next batch queue
behind those of this one instead of waiting for them (``submit_all``): there is no
barrier per batch, and one keep-alive client serves every request of the run."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import tenacity

from reflow.connectors.base import RejectedRecord, WriteResult
from reflow.connectors.errors import TransientError
from reflow.connectors.outbound_http import outbound_client

Clock = Callable[[], float]
Sleep = Callable[[float], None]
#: Longest wait we sit through inside a write; a longer Retry-After goes to the engine.
MAX_WAIT_SECONDS = 60.0
_REASON_LIMIT = 2000


def json_bytes(value: Any) -> bytes:
    """Records as JSON, in C (orjson): datetimes, dates and times in ISO 8601 as
    ``isoformat()`` writes them, anything else orjson has no form for (Decimal,
    timedelta) as its text, as the former ``json.dumps(default=...)`` did. Output is
    compact UTF-8; NaN and infinities become null (json.dumps wrote invalid JSON)."""
    return orjson.dumps(value, default=_text, option=orjson.OPT_NON_STR_KEYS)


def _text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def json_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The batch's rows for ``json_bytes``, with timestamp and date columns already
    turned into the ISO text ``json_bytes`` would write for them, by Arrow in C++
    without the GIL: building a zone-aware ``datetime`` per value was most of the
    cost of a body, and held the GIL the sending threads need. Only for bodies that
    are plain JSON (templates see the values themselves)."""
    columns = [_iso(column) for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names).to_pylist()


#: Date, time, and the fraction unless it is .000000, of Arrow's text of a timestamp.
#: Zones whose text Arrow and Python agree on: none (naive), UTC, a fixed offset.
_FIXED = re.compile(r"^(|UTC|[+-]\d\d:\d\d)$")
_ARROW_TS = r"^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.000000|(\.\d{6}))"


def _iso(column: pa.Array) -> pa.Array:
    kind = column.type
    if pa.types.is_date(kind):
        return pc.cast(column, pa.string())
    if not pa.types.is_timestamp(kind) or kind.unit == "ns" or not _FIXED.match(kind.tz or ""):
        # ns, and named zones (their offsets beyond the zone database's last transition
        # differ from Python's): left to Python's rules.
        return column
    if kind.unit != "us":
        column = pc.cast(column, pa.timestamp("us", kind.tz))
    # Arrow writes "2024-01-01 00:00:00.000000Z"; isoformat "2024-01-01T00:00:00+00:00"
    # (no fraction when it is zero): one regex pass for naive and UTC columns.
    text = pc.cast(column, pa.string())
    if kind.tz is None:
        return pc.replace_substring_regex(text, _ARROW_TS, r"\1T\2\3")
    if kind.tz == "UTC":  # Arrow ends these with "Z"
        return pc.replace_substring_regex(text, _ARROW_TS + "Z$", r"\1T\2\3+00:00")
    text = pc.replace_substring_regex(text, _ARROW_TS, r"\1T\2\3")
    text = pc.replace_substring_regex(text, "Z$", "+00:00")
    return pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2")


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


class Limiter(Protocol):
    def acquire(self) -> None: ...


class Buckets:
    """Several limits at once (the connection's and the sync's): each must allow a request."""

    def __init__(self, *buckets: Limiter) -> None:
        self.buckets = buckets

    def acquire(self) -> None:
        for bucket in self.buckets:
            bucket.acquire()


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


class _HintTooLong(tenacity.stop.stop_base):
    """Stop retrying when the server asks to wait longer than a request may."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome else None
        return isinstance(exc, _Retry) and (exc.retry_after or 0) > MAX_WAIT_SECONDS


def shown_url(url: str | httpx.URL) -> str:
    """``url`` as a run's error message may show it: without userinfo and query values,
    where API keys ride (the message is returned by the API to anyone who reads runs)."""
    parsed = httpx.URL(str(url))
    query = "&".join(f"{key}=***" for key, _ in parsed.params.multi_items())
    return str(parsed.copy_with(userinfo=b"", query=query.encode() or None))


def describe(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:_REASON_LIMIT]}"


def http_client(*, headers: Mapping[str, str], timeout: float, concurrency: int,
                follow_redirects: bool = False,
                event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None) -> httpx.Client:
    """The one place the HTTP destinations make their client: HTTP/1.1 keep-alive with a
    pool of one connection per request in flight, reused by every request of a writer.
    Every connection (each redirect hop included) passes the outbound address policy and
    is pinned to the address it judged (connectors/outbound_http.py)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return outbound_client(headers=dict(headers), timeout=timeout, limits=limits,
                           follow_redirects=follow_redirects,
                           event_hooks=dict(event_hooks or {}))


class Sender:
    """Sends requests with the rate limit, the thread pool and Census's retry rules."""

    def __init__(self, client: httpx.Client, *, bucket: Limiter, max_retries: int,
                 concurrency: int, sleep: Sleep) -> None:
        self.client, self.bucket, self.sleep = client, bucket, sleep
        self.max_retries, self.concurrency = max_retries, concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def send_all(self, requests: Sequence[Request]) -> list[RejectedRecord]:
        """Send and wait; raises the first failure (in request order) after all ran."""
        if self.concurrency == 1 or len(requests) <= 1:
            return [rejected for r in requests for rejected in self.send(r)]
        return self.submit_all(requests).result()

    def submit_all(self, requests: Sequence[Request]) -> Future[list[RejectedRecord]]:
        """Queue the requests on the writer's pool and return at once. The future holds
        the rejected records once every request finished, or the first failure in
        request order: a batch is never half acknowledged."""
        pool = self._executor()
        return gather([pool.submit(self.send, request) for request in requests])

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency,
                                                thread_name_prefix="reflow-http")
            return self._pool

    def close(self) -> None:
        """Wait for queued requests (each bounded by the timeout and the retries), then
        release the pool and the connections."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.client.close()

    def send(self, request: Request) -> list[RejectedRecord]:
        response = self._with_retries(request)
        if response.is_success:
            return []
        reason = describe(response)
        return [RejectedRecord(i, reason) for i in request.indices]

    def _with_retries(self, request: Request) -> httpx.Response:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1) | _HintTooLong(),
            wait=_wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, request)
        except _Retry as exc:
            raise TransientError(
                f"{request.method} {shown_url(request.url)} failed after retries: {exc}",
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


def gather(outcomes: list[Future[list[RejectedRecord]]]) -> Future[list[RejectedRecord]]:
    """One future for several requests': their rejected records once all finished, or
    the first failure in request order, so a batch is never half acknowledged."""
    gathered: Future[list[RejectedRecord]] = Future()
    remaining = [len(outcomes)]
    lock = threading.Lock()

    def one_done(_: Future[list[RejectedRecord]]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        for outcome in outcomes:
            failure = outcome.exception()
            if failure is not None:
                gathered.set_exception(failure)
                return
        gathered.set_result([rejected for o in outcomes for rejected in o.result()])

    if not outcomes:
        gathered.set_result([])
    for outcome in outcomes:
        outcome.add_done_callback(one_done)
    return gathered


def by_index(rejected: list[RejectedRecord]) -> WriteResult:
    return WriteResult(sorted(rejected, key=lambda r: r.index))


def as_write_result(sent: Future[list[RejectedRecord]],
                    rejected: Sequence[RejectedRecord] = ()) -> Future[WriteResult]:
    """A writer's ``submit`` outcome from its requests' (``submit_all``): the records
    rejected while building the requests plus those the destination rejected, or the
    requests' failure."""
    out: Future[WriteResult] = Future()

    def done(f: Future[list[RejectedRecord]]) -> None:
        failure = f.exception()
        if failure is not None:
            out.set_exception(failure)
        else:
            out.set_result(by_index([*rejected, *f.result()]))

    sent.add_done_callback(done)
    return out
