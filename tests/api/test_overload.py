"""Past capacity the API answers 503 with Retry-After at once, instead of queueing.

Deterministic: capacity is held by requests whose body has not finished arriving (the
guard counts a request from its first byte), never by timing. The app is Reflow's own
``create_app`` with ``REFLOW_API_MAX_CONCURRENCY=1``, called in process over ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reflow.api.app import create_app
from reflow.api.overload import OverloadGuard
from reflow.config import Settings
from reflow.runtime import Runtime
from reflow.services.bootstrap import initialize


def _client(tmp_path: Path, queue_seconds: float) -> httpx.AsyncClient:
    settings = Settings(home=tmp_path, secret_key="k", log_level="WARNING",
                        api_max_concurrency=1, api_queue_seconds=queue_seconds)
    runtime = Runtime.from_settings(settings)
    token = initialize(runtime.engine).workspace_token
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime)),
                             base_url="http://reflow", timeout=30,
                             headers={"Authorization": f"Bearer {token}"})


async def _held_body(release: asyncio.Event) -> AsyncIterator[bytes]:
    yield b'{"label": '
    await release.wait()  # the request holds its slot until the test lets it finish
    yield b'"x"}'


async def _hold(client: httpx.AsyncClient, release: asyncio.Event) -> httpx.Response:
    return await client.post("/api/v1/syncs", content=_held_body(release),
                             headers={"Content-Type": "application/json"})


async def _until_running(guard: OverloadGuard, n: int) -> None:
    while guard.running < n:
        await asyncio.sleep(0)


def _guard(client: httpx.AsyncClient) -> OverloadGuard:
    app = client._transport.app  # type: ignore[attr-defined]
    stack = app.build_middleware_stack()
    app.middleware_stack = stack  # built once here so the test sees the guard it counts
    while not isinstance(stack, OverloadGuard):
        stack = stack.app
    return stack


@pytest.mark.anyio
async def test_past_capacity_answers_503_with_retry_after_and_health_still_answers(
    tmp_path: Path,
) -> None:
    async with _client(tmp_path, queue_seconds=0) as client:
        guard = _guard(client)
        release = asyncio.Event()
        held = asyncio.create_task(_hold(client, release))
        await _until_running(guard, 1)

        refused = await client.get("/api/v1/syncs")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["status"] == "error"
        assert (await client.get("/healthz")).status_code == 200  # exempt

        release.set()
        assert (await held).status_code == 400  # the held request itself was served
        assert (await client.get("/api/v1/syncs")).status_code == 200  # capacity is back
        assert guard.running == 0 and guard.waiting == 0


@pytest.mark.anyio
async def test_a_request_past_capacity_waits_for_a_slot_within_the_queue_bound(
    tmp_path: Path,
) -> None:
    async with _client(tmp_path, queue_seconds=60) as client:
        guard = _guard(client)
        release = asyncio.Event()
        held = asyncio.create_task(_hold(client, release))
        await _until_running(guard, 1)
        queued = asyncio.create_task(client.get("/api/v1/syncs"))
        while guard.waiting < 1:
            await asyncio.sleep(0)
        assert not queued.done()
        release.set()
        assert (await held).status_code == 400
        assert (await queued).status_code == 200  # it got the slot, not a 503


async def _asgi_get(app: Any, path: str, token: str) -> int:
    """A GET as uvicorn drives it: the whole request already read, so ``receive`` and
    ``send`` never wait (unlike an HTTP client's transport)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "state": {},
             "headers": [(b"host", b"reflow"), (b"authorization", f"Bearer {token}".encode())]}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


@pytest.mark.anyio
async def test_a_backlog_of_polled_reads_is_refused_past_capacity(tmp_path: Path) -> None:
    """Polled reads run on the event loop and never wait there: without a yield to the
    loop each would run from the edge to its response in one go, and a backlog would
    queue behind it instead of meeting the guard (api/deps.polled_read)."""
    settings = Settings(home=tmp_path, secret_key="k", log_level="WARNING",
                        api_max_concurrency=1, api_queue_seconds=0)
    runtime = Runtime.from_settings(settings)
    token = initialize(runtime.engine).workspace_token
    app = create_app(runtime)
    assert await _asgi_get(app, "/api/v1/syncs", token) == 200  # token cached, stack built
    codes = await asyncio.gather(*(_asgi_get(app, path, token) for path in (
        "/api/v1/syncs", "/api/v1/syncs/1", "/api/v1/sync_runs/1") * 3))
    assert sorted(codes)[1:] == [503] * 8, codes
    runtime.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
