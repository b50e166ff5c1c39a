"""``create_app()``: the Census-compatible API under ``/api/v1``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from reflow import __version__
from reflow.api.overload import OverloadGuard
from reflow.api.routers import (
    catalog,
    connect_links,
    connect_pages,
    destination_objects,
    destinations,
    organization,
    organization_workspaces,
    projects,
    sources,
    syncs,
    topics,
)
from reflow.api.routers import datasets as datasets_router
from reflow.api.routers import links as links_router
from reflow.api.routers import records as records_router
from reflow.api.routers import segments as segments_router
from reflow.api.routers import source_catalog as source_catalog_router
from reflow.api.routers import webhooks as webhooks_router
from reflow.errors import ReflowError
from reflow.runtime import Runtime

if TYPE_CHECKING:
    from reflow.jobs.deliverer import WebhookDeliverer
    from reflow.jobs.scheduler import Scheduler

log = logging.getLogger(__name__)


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if runtime.executor is not None:
            runtime.executor.start()
        from reflow.jobs.background import sweep_lost

        sweep_lost(runtime)  # refresh jobs a dead process left processing
        scheduler = _embedded_scheduler(runtime)
        deliverer = _webhook_deliverer(runtime)
        yield
        if deliverer is not None:
            deliverer.stop()
        if scheduler is not None:
            scheduler.stop()
        if runtime.executor is not None:
            # Running runs stop at their next batch boundary and are marked failed,
            # never left working.
            runtime.executor.shutdown(wait=True)
        from reflow.jobs.background import shutdown as shutdown_background

        shutdown_background(runtime)  # refresh jobs (tables, columns, segment counts)

    app = FastAPI(
        lifespan=lifespan,
        title="Reflow",
        version=__version__,
        description="Self-hosted reverse ETL with a Census-compatible Management API.",
    )
    app.state.runtime = runtime
    # Before destinations: its /objects/{full_name:path} would swallow */refresh_fields*.
    app.include_router(destination_objects.router, prefix="/api/v1")
    for module in (catalog, sources, destinations, syncs, organization, organization_workspaces):
        app.include_router(module.router, prefix="/api/v1")
    for module in (webhooks_router, links_router):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(records_router.router, prefix="/api/v1")
    for module in (source_catalog_router, segments_router, datasets_router):
        app.include_router(module.router, prefix="/api/v1")
    for module in (connect_links, projects, topics):  # issue 3 §10-§12, issue 4 §16
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(topics.ingest_router)  # POST /ingest/{source_id}/{topic}
    app.include_router(connect_pages.router)  # the HTML page a connect link's uri opens
    _install_error_handlers(app)
    app.add_middleware(OverloadGuard, capacity=runtime.settings.api_max_concurrency,
                       queue_seconds=runtime.settings.api_queue_seconds)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:  # answered on the loop, even when threads are busy
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        from reflow.jobs.metrics import render

        return Response(render(runtime), media_type=CONTENT_TYPE_LATEST)

    return app


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
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        status: str | int = "not_found" if exc.status_code == 404 else exc.status_code
        if exc.status_code < 500 and exc.status_code != 404:
            status = "error"
        return JSONResponse(
            {"status": status, "message": str(exc.detail)}, status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            {"status": "error", "message": "internal error; see the server log"}, status_code=500
        )
