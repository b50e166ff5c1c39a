"""Past capacity, answer 503 with ``Retry-After`` at once instead of queueing.

Without a bound, a burst beyond what the process serves waits in uvicorn's and the
thread pool's queues; every later request waits behind it, latencies grow to tens of
seconds and clients time out after the work was done anyway. ``OverloadGuard`` (pure
ASGI, no per-request allocation beyond a counter) lets ``capacity`` requests run at
once; a request past that waits at most ``queue_seconds`` for a slot, with at most
``max_waiting`` waiting, and otherwise gets ``503`` with the Census error envelope and
``Retry-After``. Health checks and metrics are never refused: a load balancer must see
an overloaded process as alive.

The capacity is small on purpose (``REFLOW_API_MAX_CONCURRENCY``, 8): a request holds
the GIL for most of its ~1-4 ms, so more requests at once only make each slower and
starve the event loop that reads, refuses and answers the others (and the sync runs'
threads in the same process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EXEMPT = frozenset({"/healthz", "/metrics"})
BODY = (b'{"status":"error","message":"the server is over capacity;'
        b' retry after the delay in Retry-After"}')


class OverloadGuard:
    def __init__(self, app: ASGIApp, *, capacity: int, queue_seconds: float,
                 max_waiting: int | None = None, retry_after: int = 1,
                 exempt: frozenset[str] = EXEMPT) -> None:
        self.app, self.capacity, self.queue_seconds = app, max(1, capacity), queue_seconds
        self.max_waiting = 16 * self.capacity if max_waiting is None else max_waiting
        self.retry_after, self.exempt = str(retry_after).encode(), exempt
        self.running = self.waiting = 0
        self._slots: asyncio.Semaphore | None = None  # made on the serving loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if not await self._enter():
            await self._refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1
            assert self._slots is not None
            self._slots.release()

    async def _enter(self) -> bool:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.capacity)
        if not self._slots.locked():
            await self._slots.acquire()  # free slot: returns without yielding
        elif self.waiting >= self.max_waiting or self.queue_seconds <= 0:
            return False
        else:
            self.waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), self.queue_seconds)
            except TimeoutError:
                return False
            finally:
                self.waiting -= 1
        self.running += 1
        return True

    async def _refuse(self, send: Send) -> None:
        await send({
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
                (b"retry-after", self.retry_after),
            ],
        })
        await send({"type": "http.response.body", "body": BODY})
