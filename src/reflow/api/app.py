"""``create_app()``: the Census-compatible API under ``/api/v1``."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from reflow import __version__
from reflow.api import openapi
from reflow.api.edge import EdgeGuard
from reflow.api.overload import OverloadGuard
from reflow.api.polled import PolledRead, PolledReads, polled_reads, warm_up
from reflow.api.routers import (
    catalog,
    connect_links,
    connect_pages,
    destination_objects,
    destinations,
    managed,
    organization,
    organization_workspaces,
    projects,
    sources,
    syncs,
    topics,
    unsupported,
)
from reflow.api.routers import datasets as datasets_router
from reflow.api.routers import links as links_router
from reflow.api.routers import records as records_router
from reflow.api.routers import segments as segments_router
from reflow.api.routers import source_catalog as source_catalog_router
from reflow.api.routers import sync_preview as sync_preview_router
from reflow.api.routers import webhooks as webhooks_router
from reflow.api.schemas.common import ERRORS
from reflow.console import routes as console_routes
from reflow.errors import ReflowError, Unauthorized
from reflow.runtime import Runtime
from reflow.services.auth import authenticate

if TYPE_CHECKING:
    from reflow.jobs.deliverer import WebhookDeliverer
    from reflow.jobs.scheduler import Scheduler

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if runtime.executor is not None:
            runtime.executor.start()
        from reflow.services.background import sweep_lost

        sweep_lost(runtime)  # refresh jobs a dead process left processing
        scheduler = _embedded_scheduler(runtime)
        deliverer = _webhook_deliverer(runtime)
        await _warm_up(app, runtime, reads)
        _freeze_startup_objects()
        yield
        if deliverer is not None:
            deliverer.stop()
        if scheduler is not None:
            scheduler.stop()
        if runtime.executor is not None:
            # Running runs stop at their next batch boundary and are marked failed,
            # never left working.
            runtime.executor.shutdown(wait=True)
        from reflow.services.background import shutdown as shutdown_background

        shutdown_background(runtime)  # refresh jobs (tables, columns, segment counts)

    app = FastAPIOffline(  # Swagger UI and ReDoc from the package's files, no CDN
        lifespan=lifespan,
        title="Reflow",
        version=__version__,
        description="Self-hosted reverse ETL with a Census-compatible Management API.",
        static_url="/docs-assets",
    )
    app.state.runtime = runtime
    # Inside the edge: the caller is resolved before a polled read is dispatched.
    reads = polled_reads(syncs.router.routes)
    app.add_middleware(PolledReads, prefix=API_PREFIX, reads=reads)
    app.add_middleware(EdgeGuard, runtime=runtime)  # token and size checked before a body is read
    # Routes are matched in order, at a few microseconds each (~160 routes): what is
    # polled most (health checks, then sync runs and syncs) comes first.

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:  # answered on the loop, even when threads are busy
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from reflow.jobs.metrics import render

        return Response(render(runtime), media_type=CONTENT_TYPE_LATEST)

    _include_routers(app)
    openapi.install(app)
    _install_error_handlers(app)
    app.add_middleware(OverloadGuard, capacity=runtime.settings.api_max_concurrency,
                       queue_seconds=runtime.settings.api_queue_seconds)
    return app


async def _warm_up(app: FastAPI, runtime: Runtime, reads: list[PolledRead]) -> None:
    """What a process does once, done before it serves (see ``polled.warm_up``): a
    token's lookup, the polled reads. A failure here is the first request's to meet."""
    try:
        with runtime.sessions() as session, suppress(Unauthorized):
            authenticate(session, token="warm-up")  # no such token: compiles the lookup
        await warm_up(app, reads)
    except Exception:
        log.warning("warming up the polled reads failed", exc_info=True)


def _freeze_startup_objects() -> None:
    """Leave what start-up made (~200,000 objects: modules, routes, models, mappers)
    out of the garbage collector's full passes: each such pass walked all of them,
    ~0.1-0.5 s with the GIL held, and a request that arrived meanwhile waited for it."""
    gc.collect()
    gc.freeze()


def _include_routers(app: FastAPI) -> None:
    def api(router: APIRouter) -> None:
        app.include_router(router, prefix=API_PREFIX, responses=ERRORS)

    # First: its fixed paths would otherwise fall into /destinations/{destination_id}.
    api(unsupported.router)
    api(sync_preview_router.router)  # POST /syncs/preview (a Reflow extension), before /syncs/{id}
    api(syncs.router)  # orchestrators poll GET /sync_runs/{id}
    # Before destinations: its /objects/{full_name:path} would swallow */refresh_fields*.
    api(destination_objects.router)
    for module in (catalog, sources, destinations, organization, organization_workspaces):
        api(module.router)
    for module in (webhooks_router, links_router):
        api(module.router)
    api(records_router.router)
    for module in (source_catalog_router, segments_router, datasets_router):
        api(module.router)
    for module in (connect_links, projects, topics):  # issue 3 §10-§12, issue 4 §16
        api(module.router)
    api(managed.router)  # config as code, issue 16
    app.include_router(topics.ingest_router, responses=ERRORS)  # POST /ingest/{source_id}/{topic}
    app.include_router(connect_pages.router)  # the HTML page a connect link's uri opens
    app.include_router(console_routes.router)  # the web console at / (issue 13)


def _embedded_scheduler(runtime: Runtime) -> Scheduler | None:
    """The embedded default runs its scheduler in this process (see jobs/scheduler.py)."""
    from reflow.jobs.scheduler import Scheduler, embedded

    if runtime.executor is None or not embedded(runtime):
        return None
    scheduler = Scheduler(runtime)
    scheduler.start()
    return scheduler


def _webhook_deliverer(runtime: Runtime) -> WebhookDeliverer | None:
    """Sends the webhook outbox in the background (see jobs/deliverer.py)."""
    from reflow.jobs.deliverer import start_webhook_deliverer

    return start_webhook_deliverer(runtime) if runtime.executor is not None else None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ReflowError)
    async def reflow_error(_: Request, exc: ReflowError) -> JSONResponse:
        return JSONResponse(exc.envelope(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"] if p not in ("body", "query", "path"))
            parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
        return JSONResponse({"status": "error", "message": "; ".join(parts)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status: str | int = "not_found" if exc.status_code == 404 else exc.status_code
        if exc.status_code < 500 and exc.status_code != 404:
            status = "error"
        message = str(exc.detail)
        if exc.status_code in (404, 405):  # the same form as a missing resource's 404
            message = f"{request.method} {request.url.path}: {message.lower()}"
        return JSONResponse(
            {"status": status, "message": message},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DataError)
    async def out_of_range(_: Request, exc: DataError) -> JSONResponse:
        return _out_of_range(exc)

    @app.exception_handler(OverflowError)
    async def overflow(_: Request, exc: OverflowError) -> JSONResponse:
        # SQLite's driver cannot bind an int beyond 64 bits that a body carried.
        log.info("request number out of range: %s", exc)
        return JSONResponse(
            {"status": "error", "message": "a number in the request is out of range"},
            status_code=400,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _internal_error()


def _out_of_range(exc: DataError) -> JSONResponse:
    """PostgreSQL's 32-bit id columns cannot hold every 64-bit id the edge accepts: a
    lookup by such an id finds nothing (404); a write of such a number is bad input."""
    if getattr(exc.orig, "sqlstate", None) != "22003":  # numeric_value_out_of_range
        return _internal_error()
    if str(exc.statement or "").lstrip().upper().startswith("SELECT"):
        return JSONResponse(
            {"status": "not_found", "message": "not found: the id is out of the store's range"},
            status_code=404,
        )
    return JSONResponse(
        {"status": "error", "message": "a number in the request is out of range"}, status_code=400
    )


def _internal_error() -> JSONResponse:
    log.exception("unexpected error")
    return JSONResponse(
        {"status": "error", "message": "internal error; see the server log"}, status_code=500
    )
