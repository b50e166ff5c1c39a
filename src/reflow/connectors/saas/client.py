"""The HTTP side of a SaaS connector: one place that opens outbound clients, and a
client that paces, authenticates and retries every request the way vendors expect.

``VendorClient.request`` sends one request and returns the vendor's answer once it is
final:

* each attempt first passes the connection's ``RateLimiter``;
* 2xx and 4xx other than 401/429 are returned: the connector reads per-record errors
  from them (``ResponsePolicy.error_message`` gives the vendor's own words);
* 401: the ``Auth`` may renew its token (OAuth) and the request is sent once more;
  otherwise ``AuthFailed`` with the vendor's message (the connection test shows it);
* 429: a spent daily quota (``ResponsePolicy.quota_exhausted``) raises ``QuotaExhausted``
  at once; a window limit pauses every user of the connection for ``Retry-After`` (or
  the policy's hint) and retries;
* 5xx and transport errors: exponential backoff, ``max_retries`` times, then
  ``TransientError``.

``ResponsePolicy.observe`` sees every response, to read the vendor's limit headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from reflow.connectors.errors import TerminalError, TransientError
from reflow.connectors.outbound_http import outbound_client
from reflow.connectors.saas.auth import Auth
from reflow.connectors.saas.ratelimit import RateLimiter

USER_AGENT = "Reflow (reverse ETL; SaaS destination)"
#: Longest wait sat through inside a request; a longer hint goes to the engine.
MAX_WAIT_SECONDS = 60.0
_REASON_LIMIT = 2000


def open_client(
    *, base_url: str = "", timeout: float = 60.0, headers: Mapping[str, str] | None = None,
    max_connections: int = 32,
) -> httpx.Client:
    """Every outbound HTTP client of a SaaS connector is opened here, so that the
    outbound address policy (connectors/outbound.py) judges every connection, pinned to
    the judged address."""
    return outbound_client(
        base_url=base_url,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        limits=httpx.Limits(max_connections=max_connections,
                            max_keepalive_connections=max_connections),
        follow_redirects=False,
    )


class AuthFailed(TerminalError):
    """The vendor refused the credentials (HTTP 401 that a token refresh did not cure)."""


class QuotaExhausted(TerminalError):
    """A quota that resets only later (a daily limit) is spent: the run stops; what was
    not acknowledged is sent by the next run."""


class ResponsePolicy(Protocol):
    """What a connector tells the client about its vendor's answers."""

    @property
    def vendor_name(self) -> str:
        """The vendor's name as messages show it."""

    def error_message(self, response: httpx.Response) -> str:
        """The vendor's own message from an error response."""

    def observe(self, response: httpx.Response, limiter: RateLimiter) -> None:
        """Read the vendor's rate-limit headers (adopt the account's real limit)."""

    def quota_exhausted(self, response: httpx.Response) -> bool:
        """Whether a 429 means a quota spent until a later reset (daily)."""

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds to wait after a 429 or 503, from the response."""


class DefaultPolicy:
    """Vendor-neutral answers: JSON ``message``/``error`` bodies, ``Retry-After``."""

    vendor_name = "The vendor"

    def error_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in ("message", "error_description", "error", "errors"):
                if body.get(key):
                    return f"HTTP {response.status_code}: {body[key]}"[:_REASON_LIMIT]
        return f"HTTP {response.status_code}: {response.text}"[:_REASON_LIMIT]

    def observe(self, response: httpx.Response, limiter: RateLimiter) -> None:
        return None

    def quota_exhausted(self, response: httpx.Response) -> bool:
        return False

    def retry_after(self, response: httpx.Response) -> float | None:
        return retry_after_seconds(response.headers.get("Retry-After"))


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


@dataclass
class VendorClient:
    http: httpx.Client
    auth: Auth
    limiter: RateLimiter
    policy: ResponsePolicy = field(default_factory=DefaultPolicy)
    max_retries: int = 5
    backoff: float = 0.25
    sleep: Callable[[float], None] = time.sleep

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send until the answer is final (see the module docstring). ``kwargs`` go to
        ``httpx.Client.request`` (``json``, ``content``, ``params``, ``headers``...)."""
        failures = refreshed = 0
        while True:
            attempt = self._attempt(method, path, kwargs)
            if isinstance(attempt, Exception):
                failures += 1
                self._backoff(failures, None, f"{method} {path}: {attempt}")
                continue
            response, used = attempt
            status = response.status_code
            if status == 401:
                if refreshed == 0 and self.auth.refresh(used):
                    refreshed += 1
                    continue
                raise AuthFailed(self.policy.error_message(response))
            if status == 429 and self.policy.quota_exhausted(response):
                raise QuotaExhausted(
                    f"{self.policy.vendor_name}'s quota is spent "
                    f"({self.policy.error_message(response)}); what was not acknowledged "
                    "is sent by the next run"
                )
            if status == 429 or status >= 500:
                failures += 1
                hint = self.policy.retry_after(response)
                if status == 429 and hint is not None:
                    self.limiter.pause(min(hint, MAX_WAIT_SECONDS), path)
                self._backoff(failures, hint, self.policy.error_message(response))
                continue
            return response

    def _attempt(
        self, method: str, path: str, kwargs: dict[str, Any]
    ) -> tuple[httpx.Response, str] | Exception:
        self.limiter.acquire(path)
        headers = dict(kwargs.get("headers") or {})
        used = self.auth.apply(headers)
        try:
            response = self.http.request(method, path, **{**kwargs, "headers": headers})
        except httpx.TransportError as exc:  # refused, reset, timed out: like a 5xx
            return exc
        self.policy.observe(response, self.limiter)
        return response, used

    def _backoff(self, failures: int, hint: float | None, reason: str) -> None:
        if failures > self.max_retries or (hint or 0) > MAX_WAIT_SECONDS:
            raise TransientError(
                f"{self.policy.vendor_name}: {reason} (after {failures} attempts)",
                retry_after=hint,
            )
        self.sleep(hint if hint is not None else self.backoff * 2 ** (failures - 1))

    def checked(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``request`` for calls that are not about records (metadata, verification):
        any 4xx is terminal with the vendor's message."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise TerminalError(self.policy.error_message(response))
        return response

    def close(self) -> None:
        self.http.close()
