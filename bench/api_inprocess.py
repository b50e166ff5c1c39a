"""The API's own cost per request, in process: no sockets, no load generator, no other
process competing for the GIL, so the figure barely moves on a shared machine.

    .venv/bin/python -m bench.api_inprocess [--requests 300] [--postgres] [--profile FILE]

Seeds the demo workspace plus 29 more syncs (30) and one completed run, as
``bench.api_bench`` does, then calls the ASGI app (``create_app``) directly with the
same three GETs, each ``--requests`` times, and prints the CPU time per request
(``time.process_time``, best of 10 rounds) of each and of uvicorn's hello-world app
(``bench.hello``) called the same way. ``--profile FILE`` writes a cProfile of one
round of every path (``python -m pstats FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import common, hello

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def call(app: App, path: str, token: str | None = None) -> tuple[int, bytes]:
    """One GET through ``app`` as uvicorn would drive it (HTTP/1.1, no body)."""
    raw_path, _, query = path.partition("?")
    headers = [(b"host", b"127.0.0.1")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": "GET", "scheme": "http", "path": raw_path,
        "raw_path": raw_path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def cpu_per_request(app: App, path: str, n: int, token: str | None) -> float:
    """Milliseconds of this process's CPU per request: the best of 10 rounds of
    ``n`` / 10 requests (other processes on a shared machine only ever add to it)."""
    best, rounds = float("inf"), 10
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(max(1, n // rounds)):
            status, body = await call(app, path, token)
            assert status == 200, body[:500]
        best = min(best, (time.process_time() - start) * 1000 / max(1, n // rounds))
    return best


def copy_of(demo: dict[str, Any], sync: dict[str, Any]) -> dict[str, Any]:
    """A ``POST /syncs`` body for another sync like the demo's ``sync``."""
    return {
        "operation": sync["operation"],
        "source_attributes": {"connection_id": demo["source_id"],
                              "object": {"type": "model", "id": demo["model_id"]}},
        "destination_attributes": {"connection_id": demo["destination_id"],
                                   "object": sync["destination_attributes"]["object"]},
        "mappings": sync["mappings"],
    }


def seed(home: Path, database_url: str | None) -> tuple[Any, dict[str, Any], list[str]]:
    """The runtime, the demo's ids and token, and the three paths the benchmark GETs."""
    from reflow.api.app import create_app
    from reflow.config import Settings
    from reflow.jobs.executor import make_executor
    from reflow.runtime import Runtime
    from reflow.services import demo as demo_service

    settings = Settings(home=home, secret_key="bench", log_level="WARNING",
                        database_url=database_url)
    runtime = Runtime.from_settings(settings)
    demo = dataclasses.asdict(demo_service.seed(runtime, customers=2000))
    runtime.executor = make_executor(runtime)
    runtime.executor.start()
    app = create_app(runtime)
    from fastapi.testclient import TestClient

    headers = {"Authorization": f"Bearer {demo['workspace_token']}"}
    with TestClient(app, headers=headers, base_url="http://127.0.0.1") as client:
        body = copy_of(demo, client.get(f"/api/v1/syncs/{demo['sync_id']}").json()["data"])
        for _ in range(29):
            assert client.post("/api/v1/syncs", json=body).status_code == 200
        run_id = client.post(f"/api/v1/syncs/{demo['sync_id']}/trigger").json()["data"][
            "sync_run_id"]
        for _ in range(600):
            status = client.get(f"/api/v1/sync_runs/{run_id}").json()["data"]["status"]
            if status in ("completed", "failed"):
                break
            time.sleep(0.1)
    runtime.executor = None
    paths = ["/api/v1/syncs", f"/api/v1/sync_runs/{run_id}", f"/api/v1/syncs/{demo['sync_id']}"]
    return runtime, demo, paths


async def measure(runtime: Any, token: str, paths: list[str], n: int,
                  profile: str | None) -> None:
    from reflow.api.app import create_app

    app = create_app(runtime)
    for path in paths:  # warm: routes compiled, pool filled, caches loaded
        for _ in range(20):
            await call(app, path, token)
    anchor = await cpu_per_request(hello.app, "/", n, None)
    print(f"  {'hello-world ASGI app (no server)':<44} {anchor:6.3f} ms CPU/request")
    for path in paths:
        ms = await cpu_per_request(app, path, n, token)
        print(f"  {'reflow GET ' + path:<44} {ms:6.3f} ms CPU/request", flush=True)
    if profile:
        inline_threads()  # cProfile sees only this thread
        profiler = cProfile.Profile()
        profiler.enable()
        for path in paths:
            for _ in range(n):
                await call(app, path, token)
        profiler.disable()
        profiler.dump_stats(profile)
        print(f"  cProfile of {n} x {len(paths)} requests: {profile}")


def inline_threads() -> None:
    """Run what would go to a worker thread inline, so that the profile sees it."""
    import anyio.to_thread

    async def run_sync(func: Callable[..., Any], *args: Any, **_: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL state")
    parser.add_argument("--profile")
    args = parser.parse_args()
    run(requests=args.requests, postgres=args.postgres, profile=args.profile)


@contextmanager
def state_store(postgres: bool, prefix: str) -> Iterator[tuple[Path, str | None]]:
    """A scratch directory and the state store's URL: a fresh PostgreSQL database
    (dropped afterwards), or None for SQLite in the directory's home."""
    os.environ.pop("REFLOW_DATABASE_URL", None)
    db = common.create_database() if postgres else None
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp), common.dsn(db) if db else None
    finally:
        if db:
            common.drop_database(db)


def run(*, requests: int = 300, postgres: bool = False, profile: str | None = None) -> None:
    store = "PostgreSQL" if postgres else "SQLite"
    print(f"\nAPI in process ({store} state): CPU per request, best of 10 rounds of "
          f"{requests // 10}")
    with state_store(postgres, "reflow-bench-inproc-") as (tmp, url):
        runtime, demo, paths = seed(tmp, url)
        asyncio.run(measure(runtime, demo["workspace_token"], paths, requests, profile))
        runtime.dispose()


if __name__ == "__main__":
    main()
