"""Vendor rate limits: one limiter per connection, shared by every sync and worker using it.

A vendor documents its limits as "N requests per W seconds" (HubSpot: 100 per 10 s for a
private app, Braze: 3,000 per 3 s on /users/track), counted over a rolling window. Each
becomes a sliding-window log of send times that hands out slots: a request reserves the
earliest time at which no window of W seconds holds more than ``allowed`` (N * PACE)
requests, and sleeps until it. Slots are handed out in time order, so the rule is simply
"at least W seconds after the slot ``allowed`` places before". A thread that wakes late
loses only its own time, never another request's turn; after a pause (the engine
committing a batch) the window's unused room is caught up at up to twice the paced
rate (never in one burst), so the limit is not
wasted, yet no window ever holds more than ``allowed``. The 7 % margin absorbs the
jitter between when we send and when the vendor counts, and a guard of 2 % of the
window keeps a thread that wakes late from carrying a window's requests into the next.

The log lives in a ``RateStore`` under a key naming the connection (a digest of the
vendor account, never the secret). In one process it is ``LocalStore``; when runs execute
on several processes (``REFLOW_EXECUTOR=celery``) the executor calls
``share_through_redis`` once and every limiter of the process uses ``RedisStore``, whose
reservation is one atomic Lua script timed by Redis's clock, so workers on several
machines draw from one log.

Beyond pacing: ``pause`` makes every user of the connection wait (a 429's
``Retry-After``), ``adopt`` replaces a documented limit with the one the vendor's headers
announce for this account (HubSpot's ``X-HubSpot-RateLimit-Max``), remembered in the store
so the next limiter of the connection (the next run, another worker) starts with it.
Daily quotas are not paced (spacing a day's quota evenly would be absurd): the vendor's
headers and 429 body say when one is spent, and the client raises ``QuotaExhausted``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

#: Fraction of a documented limit any window may hold.
PACE = 0.93
#: Slack added to the window (a fraction of it, at least 20 ms): a thread that wakes a
#: little late must not carry the previous window's requests into the next one.
GUARD = 0.02
#: How much faster than the paced rate requests may go while catching up.
BURST = 2.0


@dataclass(frozen=True)
class Limit:
    """``requests`` per ``seconds``, as the vendor documents it."""

    requests: int
    seconds: float
    #: Names the log within the connection (two limits of one vendor differ in it).
    name: str = "requests"
    #: Path prefixes the limit applies to (Braze limits /users/track apart); empty: all.
    paths: tuple[str, ...] = ()

    def applies(self, path: str) -> bool:
        return not self.paths or path.startswith(self.paths)

    @property
    def allowed(self) -> int:
        """Requests any window of ``seconds`` may hold."""
        return max(1, math.floor(self.requests * PACE))

    @property
    def spacing(self) -> float:
        """The window the log keeps, guard included."""
        return self.seconds + max(0.02, self.seconds * GUARD)

    @property
    def gap(self) -> float:
        """Least time between two requests: twice the paced rate at most, so room left
        by a pause is caught up smoothly, not in one burst that a late thread or a busy
        network would push into the next window."""
        return self.spacing / self.allowed / BURST


class RateStore(Protocol):
    def reserve(self, key: str, seconds: float, allowed: int, gap: float = 0.0) -> float:
        """Reserve the next slot of ``key`` for one request, at least ``gap`` after the
        previous one: the seconds until it may go (0: now). The slot is the caller's."""

    def pause(self, key: str, seconds: float) -> None:
        """No request of ``key`` before ``seconds`` from now."""

    def remember(self, key: str, requests: int, seconds: float) -> None:
        """The limit the vendor announced for ``key`` (see ``RateLimiter.adopt``)."""

    def recall(self, key: str) -> tuple[int, float] | None:
        """The limit last announced for ``key``, if any."""


class LocalStore:
    """Logs of this process (the embedded default: one process runs every sync)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._logs: dict[str, deque[float]] = {}
        self._hold: dict[str, float] = {}
        self._announced: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, seconds: float, allowed: int, gap: float = 0.0) -> float:
        with self._lock:
            now = self.clock()
            log = self._logs.get(key)
            if log is None or log.maxlen != allowed:
                log = self._logs[key] = deque(log or (), maxlen=allowed)
            slot = max(now, self._hold.get(key, now), log[-1] + gap if log else now)
            if len(log) == allowed:
                slot = max(slot, log[0] + seconds)
            log.append(slot)
            return slot - now

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            now = self.clock()
            self._hold[key] = max(self._hold.get(key, now), now + seconds)

    def remember(self, key: str, requests: int, seconds: float) -> None:
        self._announced[key] = (requests, seconds)

    def recall(self, key: str) -> tuple[int, float] | None:
        return self._announced.get(key)


_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local allowed = tonumber(ARGV[2])
local slot = now
local last = redis.call('LINDEX', KEYS[1], 0)
if last and tonumber(last) + tonumber(ARGV[3]) > slot then
  slot = tonumber(last) + tonumber(ARGV[3])
end
local hold = redis.call('GET', KEYS[2])
if hold and tonumber(hold) > slot then slot = tonumber(hold) end
local nth = redis.call('LINDEX', KEYS[1], allowed - 1)
if nth and tonumber(nth) + window > slot then slot = tonumber(nth) + window end
redis.call('LPUSH', KEYS[1], string.format('%.0f', slot))
redis.call('LTRIM', KEYS[1], 0, allowed - 1)
redis.call('PEXPIRE', KEYS[1], math.floor((slot - now + window) / 1000) + 60000)
return slot - now
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
local hold = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > hold then
  redis.call('SET', KEYS[1], string.format('%.0f', until_), 'PX',
             math.floor(tonumber(ARGV[1]) / 1000) + 60000)
end
return 0
"""


class RedisStore:
    """Logs in Redis, shared by every process; times in microseconds of Redis's clock."""

    def __init__(self, url: str, *, prefix: str = "reflow:ratelimit:") -> None:
        import redis

        self.prefix = prefix
        self.redis = redis.Redis.from_url(url)
        self._reserve = self.redis.register_script(_RESERVE)
        self._pause = self.redis.register_script(_PAUSE)

    def reserve(self, key: str, seconds: float, allowed: int, gap: float = 0.0) -> float:
        keys = [f"{self.prefix}{key}:{allowed}", f"{self.prefix}{key}:hold"]
        wait = self._reserve(keys=keys, args=[int(seconds * 1e6), allowed, int(gap * 1e6)])
        return int(wait) / 1e6

    def pause(self, key: str, seconds: float) -> None:
        self._pause(keys=[f"{self.prefix}{key}:hold"], args=[int(seconds * 1e6)])

    def remember(self, key: str, requests: int, seconds: float) -> None:
        self.redis.set(f"{self.prefix}{key}:limit", f"{requests}/{seconds}", ex=86_400)

    def recall(self, key: str) -> tuple[int, float] | None:
        raw = self.redis.get(f"{self.prefix}{key}:limit")
        if not raw:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        requests, _, seconds = text.partition("/")
        return int(requests), float(seconds)


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
        self.limits: dict[str, Limit] = {}
        for limit in limits:
            # A limit announced to an earlier limiter of this connection holds from the
            # first request: the log it shares may be full at that (higher) rate.
            announced = self.store.recall(f"{key}:{limit.name}")
            if announced is not None:
                limit = replace(limit, requests=announced[0], seconds=announced[1])
            self.limits[limit.name] = limit

    def acquire(self, path: str = "") -> None:
        """Block until every limit on ``path`` lets one more request go."""
        for limit in list(self.limits.values()):
            if limit.applies(path):
                wait = self._reserve(limit)
                if wait > 0:
                    self.sleep(wait)

    def _reserve(self, limit: Limit) -> float:
        return self.store.reserve(f"{self.key}:{limit.name}", limit.spacing, limit.allowed,
                                  limit.gap)

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
            self.store.remember(f"{self.key}:{name}", requests, seconds)

    def describe(self) -> dict[str, Any]:
        return {n: f"{lim.requests}/{lim.seconds:g}s" for n, lim in self.limits.items()}
