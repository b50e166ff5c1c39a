"""The sending core of the HTTP destinations (HTTP Request, Webhook): a requests-per-second
token bucket, and a sender that runs requests on a thread pool with Census's response
rules (reference §2.4): 2xx accepted; another 4xx than 429 rejects the request's records;
429, 5xx and network errors retried ``max_retries`` times with exponential backoff,
honouring ``Retry-After``, then ``TransientError``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx
import tenacity

from reflow.connectors.base import RejectedRecord
from reflow.connectors.errors import TransientError

Clock = Callable[[], float]
Sleep = Callable[[float], None]
#: Longest wait we sit through inside a write; a longer Retry-After goes to the engine.
MAX_WAIT_SECONDS = 60.0
_REASON_LIMIT = 2000


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


def _hint_too_long(state: tenacity.RetryCallState) -> bool:
    exc = state.outcome.exception() if state.outcome else None
    return isinstance(exc, _Retry) and (exc.retry_after or 0) > MAX_WAIT_SECONDS


def describe(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:_REASON_LIMIT]}"


class Sender:
    """Sends requests with the rate limit, the thread pool and Census's retry rules."""

    def __init__(self, client: httpx.Client, *, bucket: Limiter, max_retries: int,
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
