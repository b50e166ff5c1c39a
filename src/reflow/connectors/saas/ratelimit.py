"""Vendor rate limits: one limiter per connection, shared by every sync and worker using it.

A vendor documents its limits as "N requests per W seconds" (HubSpot: 100 per 10 s for a
private app, Braze: 250,000 a minute on /users/track). Each becomes a GCRA bucket (a token
bucket kept as one timestamp, the theoretical arrival time): requests are spaced
``W / (N * PACE)`` apart with a small burst, chosen so that *any* window of W seconds
holds at most ``N * CEILING`` requests. The margin absorbs the jitter between when we
send and when the vendor counts. ``PACE`` is what we aim for (the benchmark's ≥ 90 % of
the limit-bound ceiling).

The bucket lives in a ``RateStore`` under a key naming the connection (a digest of the
vendor account, never the secret). In one process it is ``LocalStore``; when runs execute
on several processes (``REFLOW_EXECUTOR=celery``) the executor calls
``share_through_redis`` once and every limiter of the process uses ``RedisStore``, whose
reservation is one atomic Lua script timed by Redis's clock, so workers on several
machines draw from one bucket.

Beyond pacing: ``pause`` makes every user of the connection wait (a 429's
``Retry-After``), ``adopt`` replaces a documented limit with the one the vendor's headers
announce for this account (HubSpot's ``X-HubSpot-RateLimit-Max``). Daily quotas are not
paced (spacing a day's quota evenly would be absurd): the vendor's headers and 429 body
say when one is spent, and the client raises ``QuotaExhausted``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

#: Fraction of a documented limit the limiter paces at.
PACE = 0.95
#: Most of a documented limit any window may hold (pace plus burst).
CEILING = 0.98


@dataclass(frozen=True)
class Limit:
    """``requests`` per ``seconds``, as the vendor documents it."""

    requests: int
    seconds: float
    #: Names the bucket within the connection (two limits of one vendor differ in it).
    name: str = "requests"
    #: Path prefixes the limit applies to (Braze limits /users/track apart); empty: all.
    paths: tuple[str, ...] = ()

    def applies(self, path: str) -> bool:
        return not self.paths or path.startswith(self.paths)

    @property
    def interval(self) -> float:
        """Seconds between two requests at the paced rate."""
        return self.seconds / (self.requests * PACE)

    @property
    def burst(self) -> int:
        """Requests beyond the paced rate a window may hold, keeping it under CEILING."""
        return max(0, math.floor(self.requests * CEILING) - math.floor(self.requests * PACE) - 1)


class RateStore(Protocol):
    def reserve(self, key: str, interval: float, burst: int) -> float:
        """Reserve one request; 0 when it may go now, else the seconds to wait before
        asking again (nothing was reserved)."""

    def pause(self, key: str, seconds: float) -> None:
        """No request of ``key`` before ``seconds`` from now."""


class LocalStore:
    """Buckets of this process (the embedded default: one process runs every sync)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, interval: float, burst: int) -> float:
        with self._lock:
            now = self.clock()
            tat = max(self._tat.get(key, now), now)
            ahead = tat - now - burst * interval
            if ahead > 0:
                return ahead
            self._tat[key] = tat + interval
            return 0.0

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            now = self.clock()
            self._tat[key] = max(self._tat.get(key, now), now + seconds)


_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat - now - tonumber(ARGV[2]) * interval
if ahead > 0 then return ahead end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.floor((tat + interval - now) / 1000) + 60000)
return 0
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > tat then
  redis.call('SET', KEYS[1], until_, 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 60000)
end
return 0
"""


class RedisStore:
    """Buckets in Redis, shared by every process; times in microseconds of Redis's clock."""

    def __init__(self, url: str, *, prefix: str = "reflow:ratelimit:") -> None:
        import redis

        self.prefix = prefix
        self.redis = redis.Redis.from_url(url)
        self._reserve = self.redis.register_script(_RESERVE)
        self._pause = self.redis.register_script(_PAUSE)

    def reserve(self, key: str, interval: float, burst: int) -> float:
        wait = self._reserve(keys=[self.prefix + key], args=[int(interval * 1e6), burst])
        return int(wait) / 1e6

    def pause(self, key: str, seconds: float) -> None:
        self._pause(keys=[self.prefix + key], args=[int(seconds * 1e6)])


_local = LocalStore()
_shared: RateStore | None = None


def share_through_redis(url: str | None) -> None:
    """From now on, limiters of this process share their buckets through Redis at ``url``
    (``None``: back to in-process buckets). Called by the executor when runs execute on
    several processes."""
    global _shared
    _shared = RedisStore(url) if url else None


def default_store() -> RateStore:
    return _shared or _local


class RateLimiter:
    """Every request of one connection passes ``acquire``; thread-safe."""

    def __init__(
        self,
        key: str,
        limits: Sequence[Limit],
        *,
        store: RateStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key, self.sleep = key, sleep
        self.store = store or default_store()
        self.limits: dict[str, Limit] = {limit.name: limit for limit in limits}

    def acquire(self, path: str = "") -> None:
        """Block until every limit on ``path`` lets one more request go."""
        for limit in list(self.limits.values()):
            if not limit.applies(path):
                continue
            while (wait := self._reserve(limit)) > 0:
                self.sleep(min(wait, 5.0))

    def _reserve(self, limit: Limit) -> float:
        return self.store.reserve(f"{self.key}:{limit.name}", limit.interval, limit.burst)

    def pause(self, seconds: float, path: str = "") -> None:
        """Every user of the connection waits ``seconds`` (a 429's Retry-After) before
        its next request on ``path``."""
        for limit in self.limits.values():
            if limit.applies(path):
                self.store.pause(f"{self.key}:{limit.name}", seconds)

    def adopt(self, name: str, requests: int, seconds: float) -> None:
        """The vendor's headers give this account's real limit: pace by it instead."""
        current = self.limits.get(name)
        if requests <= 0 or seconds <= 0:
            return
        if current is None or (current.requests, current.seconds) != (requests, seconds):
            base = current or Limit(requests, seconds, name)
            self.limits[name] = replace(base, requests=requests, seconds=seconds)

    def describe(self) -> dict[str, Any]:
        return {n: f"{lim.requests}/{lim.seconds:g}s" for n, lim in self.limits.items()}
