"""``/openapi.json`` as the API really behaves.

Routers read bodies themselves (``deps.json_object``: empty bodies and
``application/json;version=2`` accepted, the services' own validation messages), so
FastAPI does not know their shape. ``deps.body_of(Model)`` marks a route's body model;
this module puts it in the spec. It also declares the two ways to send a token
(HTTP bearer and HTTP basic with user ``bearer``) on exactly the operations
``api/edge.py`` guards, and drops FastAPI's 422 answer, which Reflow never gives
(validation errors are 400 with the Census envelope).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from reflow.api.edge import needs_token

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A workspace API key or a personal access (organization) token.",
    },
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "User `bearer`, the token as password (dagster-census's form).",
    },
    "ingestionSecret": {
        "type": "http",
        "scheme": "bearer",
        "description": "A topic's ingestion secret (POST /ingest/... only).",
    },
}
_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"basicAuth": []}]
_REF = "#/components/schemas/{model}"


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = spec.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    _add_bodies(spec, _body_models(app))
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            if needs_token(path):
                operation["security"] = _SECURITY
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    return spec


def _body_models(app: FastAPI) -> dict[tuple[str, str], type[BaseModel]]:
    found = {}
    for path, route in _api_routes(app):
        model = _body_model(route.dependant)
        for method in route.methods or ():
            if model is not None and route.include_in_schema:
                found[(path, method.lower())] = model
    return found


def _api_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every API route, included routers flattened."""
    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:  # FastAPI before included routers were kept lazily
        contexts: Any = [(r.path_format, r) for r in app.routes if isinstance(r, APIRoute)]
        yield from contexts
        return
    for context in iterate(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path_format:
            yield context.path_format, route


def _body_model(dependant: Dependant) -> type[BaseModel] | None:
    for sub in dependant.dependencies:
        model = getattr(sub.call, "body_model", None) or _body_model(sub)
        if model is not None:
            return model
    return None


def _add_bodies(spec: dict[str, Any], bodies: dict[tuple[str, str], type[BaseModel]]) -> None:
    models = sorted(set(bodies.values()), key=lambda m: m.__name__)
    refs, defs = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    spec["components"].setdefault("schemas", {}).update(defs.get("$defs", {}))
    for (path, method), model in bodies.items():
        spec["paths"][path][method]["requestBody"] = {
            # Empty bodies are accepted where every field is optional (Airflow posts none).
            "required": any(f.is_required() for f in model.model_fields.values()),
            "content": {"application/json": {"schema": refs[(model, "validation")]}},
        }
