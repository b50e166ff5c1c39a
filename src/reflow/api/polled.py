"""The reads clients poll, handed straight to their FastAPI endpoint.

Orchestrators poll GET /sync_runs/{id} every few seconds per running sync and a console
polls GET /syncs and GET /syncs/{id}; of such a request's CPU, FastAPI's share (matching
the path through the included routers, twice; solving the parameters and dependencies;
its request wrapper) was as large as the read itself. ``PolledReads`` (pure ASGI, inside
``EdgeGuard``, so the caller is already resolved, and inside ``OverloadGuard``) takes a
GET whose path matches a polled read's route, with plain values only, and calls that
route's own endpoint (``deps.polled_read``) with the arguments FastAPI would have given
it: the same service and render functions, the same response object. Its exceptions
meet the app's own exception handlers, in a Starlette ``ExceptionMiddleware`` built as
FastAPI builds its own. Anything else (another method or path, a value FastAPI might
parse or refuse differently, a parameter kind this module does not know) goes on to
FastAPI unchanged: the routes stay FastAPI's, and so does ``/openapi.json``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, get_args

from fastapi import Request
from fastapi.params import Depends
from fastapi.routing import APIRoute
from starlette.datastructures import QueryParams
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from reflow.api.envelope import page_params
from reflow.api.schemas.common import Int64
from reflow.errors import ReflowError
from reflow.services.auth import Principal

#: Values taken as they are: digits that are an Int64 whatever they say (FastAPI would
#: parse them to the same int). Signs, spaces, 19+ digits... go to FastAPI.
_PLAIN_INT = re.compile(r"[0-9]{1,18}")
_KEY = "reflow.polled_read"

Argument = Callable[[Request, dict[str, str]], Any]


@dataclass(frozen=True)
class PolledRead:
    route: APIRoute
    #: Parameter name -> how to get its value from the request and the path's values
    #: (a route with a parameter of another kind is left to FastAPI: ``polled_read_of``).
    arguments: dict[str, Argument]
    #: Query parameters the endpoint reads (a dependency's): name -> an Int64 (else text).
    query: dict[str, bool]


def polled_reads(routes: Sequence[BaseRoute]) -> list[PolledRead]:
    return [read for read in map(polled_read_of, routes) if read is not None]


class PolledReads:
    def __init__(self, app: ASGIApp, *, prefix: str, reads: Sequence[PolledRead]) -> None:
        self.app, self.prefix, self.reads = app, prefix, reads
        self._handled: ASGIApp | None = None  # needs the app's handlers: made on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(
                self.prefix):
            found = self._match(scope)
            if found is not None:
                scope[_KEY] = found
                if self._handled is None:
                    self._handled = _with_exception_handlers(_serve, scope["app"])
                await self._handled(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _match(self, scope: Scope) -> tuple[PolledRead, dict[str, str]] | None:
        path = scope["path"][len(self.prefix):]
        for read in self.reads:
            match = read.route.path_regex.match(path)
            if match is not None:
                values = match.groupdict()
                if not all(_PLAIN_INT.fullmatch(value) for value in values.values()):
                    return None
                if read.query and not _plain_query(scope, read.query):
                    return None
                return read, values
        return None


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    read, values = scope.pop(_KEY)
    route: APIRoute = read.route
    scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, values
    response = await _call(read, Request(scope, receive, send), values)
    await response(scope, receive, send)


async def _call(read: PolledRead, request: Request, values: dict[str, str]) -> Any:
    """``read``'s endpoint with the arguments FastAPI would have given it."""
    kwargs = {}
    for name, argument in read.arguments.items():
        value = argument(request, values)
        kwargs[name] = await value if inspect.isawaitable(value) else value
    return await read.route.endpoint(**kwargs)


async def warm_up(app: Any, reads: Sequence[PolledRead]) -> None:
    """Each polled read once, for a workspace and ids that do not exist, before the
    process serves: what a process does the first time (opening the read pool's first
    connection, compiling the statements, PostgreSQL's backend loading its catalog)
    cost a fresh ``--workers`` process ~50 ms on its first polled request, with the
    requests that arrived meanwhile queued behind it."""
    scope = {"type": "http", "app": app, "method": "GET", "scheme": "http", "root_path": "",
             "path": "/", "query_string": b"", "headers": [], "server": ("warm-up", 80),
             "state": {"principal": Principal("workspace", 0, 0)}}
    request = Request(scope)
    for read in reads:
        values = dict.fromkeys(read.route.param_convertors, "0")
        with suppress(ReflowError):  # not found, as meant
            await _call(read, request, values)


def _with_exception_handlers(app: ASGIApp, fastapi_app: Any) -> ASGIApp:
    """``app`` inside the ``ExceptionMiddleware`` FastAPI puts around its router: the
    app's handlers, less the one for 500/Exception (its ``ServerErrorMiddleware``'s,
    outside every user middleware, where an unhandled exception still goes)."""
    handlers = {key: handler for key, handler in fastapi_app.exception_handlers.items()
                if key not in (500, Exception)}
    return ExceptionMiddleware(app, handlers=handlers, debug=fastapi_app.debug)


def _plain_query(scope: Scope, names: dict[str, bool]) -> bool:
    """Each of ``names`` at most once, none empty, an Int64 one as plain digits."""
    if not scope["query_string"]:
        return True
    seen: set[str] = set()
    for name, value in QueryParams(scope["query_string"]).multi_items():
        if name in names:
            if name in seen or not value or (names[name] and not _PLAIN_INT.fullmatch(value)):
                return False
            seen.add(name)
    return True


# -- what FastAPI would pass ------------------------------------------------------------


def polled_read_of(route: BaseRoute) -> PolledRead | None:
    """A GET route whose endpoint is a ``deps.polled_read`` and whose parameters are all
    of the kinds below, or None (the route is left to FastAPI)."""
    if not (isinstance(route, APIRoute) and route.methods == {"GET"}
            and getattr(route.endpoint, "polled_read", False) and not route.dependencies):
        return None
    arguments: dict[str, Argument] = {}
    query: dict[str, bool] = {}
    for param in inspect.signature(route.endpoint, eval_str=True).parameters.values():
        if param.annotation is Request:
            arguments[param.name] = _the_request
        elif param.name in route.param_convertors and param.annotation == Int64:
            arguments[param.name] = _path_int(param.name)
        elif isinstance(param.default, Depends) and param.default.dependency is page_params:
            names = _query_parameters(page_params)
            if names is None:
                return None
            query |= {name: is_int for name, (is_int, _) in names.items()}
            arguments[param.name] = _dependency(page_params, names)
        else:
            return None
    return PolledRead(route, arguments, query)


def _the_request(request: Request, _values: dict[str, str]) -> Request:
    return request


def _path_int(name: str) -> Argument:
    def value(_request: Request, values: dict[str, str]) -> int:
        return int(values[name])

    return value


def _query_parameters(dependency: Callable[..., Any]) -> dict[str, tuple[bool, Any]] | None:
    """``dependency``'s query parameters: name -> (an Int64, else text; its default);
    None if one is of another kind."""
    out = {}
    for param in inspect.signature(dependency, eval_str=True).parameters.values():
        if param.annotation is str:
            is_int = False
        elif get_args(param.annotation)[:3] == get_args(Int64):  # Annotated[Int64, Query()]
            is_int = True
        else:
            return None
        default = getattr(param.default, "default", param.default)  # Query(...) or a value
        out[param.name] = (is_int, default)
    return out


def _dependency(dependency: Callable[..., Awaitable[Any]],
                names: dict[str, tuple[bool, Any]]) -> Argument:
    def value(request: Request, _values: dict[str, str]) -> Awaitable[Any]:
        given = request.query_params if request.scope["query_string"] else {}
        kwargs = {}
        for name, (is_int, default) in names.items():
            raw = given.get(name)
            kwargs[name] = default if raw is None else int(raw) if is_int else raw
        return dependency(**kwargs)

    return value
