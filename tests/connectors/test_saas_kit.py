"""The SaaS kit's own parts: the shared rate limiter (in-process and through the real
Redis), and the OAuth refresh flow under concurrent 401s."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from reflow.connectors.saas.auth import OAuthRefresh
from reflow.connectors.saas.ratelimit import Limit, LocalStore, RateLimiter, RedisStore
from tests.conftest import require_service


def peak(times: list[float], window: float) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize(("requests", "allowed"), [(1, 1), (10, 9), (100, 93), (3000, 2790)])
def test_a_window_may_hold_93_percent_of_the_limit(requests: int, allowed: int) -> None:
    assert Limit(requests, 1.0).allowed == allowed


def test_room_left_after_a_pause_is_used_at_once() -> None:
    now = [0.0]
    store = LocalStore(clock=lambda: now[0])
    waits = [store.reserve("k", 1.0, 5, 0.1) for _ in range(7)]
    # Five a window, 0.1 s apart at least; the sixth a window after the first.
    assert waits == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 1.0, 1.1])
    now[0] = 10.0  # idle: the window is empty again, its room is used at once
    assert [store.reserve("k", 1.0, 5, 0.1) for _ in range(3)] == pytest.approx([0, 0.1, 0.2])


def hammer(limiters: list[RateLimiter], seconds: float) -> list[float]:
    """Threads acquire through the given limiters for ``seconds``; when each got through."""
    stamps: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker(limiter: RateLimiter) -> None:
        while time.monotonic() < end:
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    with ThreadPoolExecutor(len(limiters)) as pool:
        list(pool.map(worker, limiters))
    return stamps


def test_local_limiters_of_one_connection_share_a_bucket() -> None:
    store = LocalStore()
    key = f"t:{uuid.uuid4().hex}"
    limiters = [RateLimiter(key, [Limit(50, 0.5)], store=store) for _ in range(4)]
    stamps = hammer(limiters, 1.2)
    # 46 a window by the log; what the vendor sees stays under its 50 even with threads
    # waking late on a loaded machine.
    assert peak(stamps, 0.5) <= 50
    assert len(stamps) >= 90  # 46 a window, ~2.4 windows: it does not crawl either


def test_redis_shares_the_bucket_between_processes() -> None:
    require_service("Redis", 6379)
    key = f"t:{uuid.uuid4().hex}"
    # Each limiter has a Redis client of its own and keeps no state: what four worker
    # processes would hold.
    limiters = [RateLimiter(key, [Limit(40, 0.5)], store=RedisStore("redis://127.0.0.1:6379/0"))
                for _ in range(4)]
    stamps = hammer(limiters, 1.2)
    assert peak(stamps, 0.5) <= 40
    assert len(stamps) >= 70  # 37 a window, ~2.4 windows


def test_pause_holds_every_user_of_the_connection() -> None:
    store = LocalStore()
    key = f"t:{uuid.uuid4().hex}"
    a, b = (RateLimiter(key, [Limit(1000, 1.0)], store=store) for _ in range(2))
    a.pause(0.3)
    started = time.monotonic()
    b.acquire()
    assert time.monotonic() - started >= 0.25


def test_path_limits_apply_to_their_paths_only() -> None:
    limiter = RateLimiter(f"t:{uuid.uuid4().hex}",
                          [Limit(1, 60.0, "delete", paths=("/users/delete",))],
                          store=LocalStore())
    started = time.monotonic()
    for _ in range(20):
        limiter.acquire("/users/track")
    limiter.acquire("/users/delete")
    assert time.monotonic() - started < 1.0


def test_concurrent_401s_renew_the_token_once() -> None:
    issued: list[str] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)  # a slow token endpoint: the other threads pile up meanwhile
        issued.append(f"tok-{len(issued)}")
        return httpx.Response(200, json={"access_token": issued[-1], "expires_in": 1800})

    saved: list[Any] = []
    from reflow.connectors.saas.hooks import ConnectionHooks

    auth = OAuthRefresh(vendor="Acme", http=httpx.Client(transport=httpx.MockTransport(
        token_endpoint)), token_url="http://token.invalid/oauth", client_id="c",
        client_secret="s", refresh_token="r", access_token="stale", expires_at=None,
        hooks=ConnectionHooks(saved.append))
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda _: auth.refresh("stale"), range(8)))
    assert issued == ["tok-0"] and len(saved) == 1
    headers: dict[str, str] = {}
    assert auth.apply(headers) == "tok-0" and headers["Authorization"] == "Bearer tok-0"


def test_an_announced_limit_holds_for_the_next_limiter_of_the_connection() -> None:
    store = LocalStore()
    key = f"t:{uuid.uuid4().hex}"
    first = RateLimiter(key, [Limit(100, 10.0, "w")], store=store)
    first.adopt("w", 1000, 1.0)  # the vendor's headers: this account allows more
    for _ in range(200):  # a run at the announced rate fills the shared log
        first.acquire()
    second = RateLimiter(key, [Limit(100, 10.0, "w")], store=store)  # the next run
    assert second.limits["w"].requests == 1000
    started = time.monotonic()
    second.acquire()
    assert time.monotonic() - started < 1.0  # not the documented 10 s window


def test_redis_remembers_the_announced_limit() -> None:
    require_service("Redis", 6379)
    key = f"t:{uuid.uuid4().hex}"
    RateLimiter(key, [Limit(100, 10.0, "w")],
                store=RedisStore("redis://127.0.0.1:6379/0")).adopt("w", 150, 10.0)
    other = RateLimiter(key, [Limit(100, 10.0, "w")],
                        store=RedisStore("redis://127.0.0.1:6379/0"))
    assert (other.limits["w"].requests, other.limits["w"].seconds) == (150, 10.0)
