"""The API's edge: who is calling and how much they may send, decided before a body
is read.

``EdgeGuard`` is a pure ASGI middleware, so it runs before FastAPI reads or parses
anything. For ``/api/v1`` it resolves the caller's token once (a missing or unknown
token is a 401 without a byte of the body read, so a flood of bad tokens costs one
indexed lookup each, no more than a good one's first request) and keeps the principal
in the request scope, where ``deps.workspace_context`` reuses it. A token seen less
than a second ago is resolved on the event loop from ``services/auth.py``'s cache
(revocation: see there); any other goes to a worker thread for its lookup. For every
request it counts the body's bytes as they stream in: a declared ``Content-Length``
above the limit is a 413 at once, a body that grows past it is a 413 when it does.
Capability-link routes (their token is in the URL) and topic ingestion (its own
secret) are not API-token routes; ingestion has its own, larger limit.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reflow.errors import BadRequest, PayloadTooLarge, ReflowError, Unauthorized
from reflow.runtime import Runtime
from reflow.services.auth import MISSING_TOKEN, Principal, authenticate, cached

#: /api/v1 routes a capability token in the URL authorises instead of an API token.
_PUBLIC = re.compile(
    r"^/api/v1/(embedded/|sync_runs/[^/]+/records_export/[^/]+/[^/]+$)"
)
_API = "/api/v1/"
_INGEST = "/ingest/"


def token_from_header(header: str) -> str | None:
    """``Bearer <token>``, or HTTP Basic with user ``bearer`` and the token as password
    (the form dagster-census and the old Census docs use)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed Basic credentials") from None
        return password if user.lower() == "bearer" else None
    return None


def needs_token(path: str) -> bool:
    return path.startswith(_API) and not _PUBLIC.match(path)


class EdgeGuard:
    def __init__(self, app: ASGIApp, *, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            if needs_token(scope["path"]):
                token = token_from_header(headers.get("authorization", ""))
                if not token:  # refused without a thread or a database session
                    raise Unauthorized(MISSING_TOKEN)
                principal = cached(self.runtime.engine, token) or await anyio.to_thread.run_sync(
                    self._authenticate, token)
                scope.setdefault("state", {})["principal"] = principal
            limit = self._limit(scope["path"])
            _check_declared_length(headers, limit)
        except ReflowError as exc:
            await _reply(send, exc)
            return
        await self.app(scope, _counting(receive, limit), send)

    def _authenticate(self, token: str) -> Principal:
        with self.runtime.sessions() as session:
            return authenticate(session, token=token)

    def _limit(self, path: str) -> int:
        settings = self.runtime.settings
        return settings.max_ingest_bytes if path.startswith(_INGEST) else settings.max_body_bytes


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body: larger than the limit of {limit} bytes")


def _check_declared_length(headers: Headers, limit: int) -> None:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises ``PayloadTooLarge`` once the body passes ``limit``; the
    app's ReflowError handler turns it into the 413 envelope."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return wrapped


async def _reply(send: Send, exc: ReflowError) -> None:
    body = json.dumps(exc.envelope()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status_code == 401:
        headers.append((b"www-authenticate", b'Bearer realm="reflow"'))
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def parse_json(raw: bytes, *, max_depth: int) -> Any:
    """``raw`` parsed, refusing nesting deeper than ``max_depth`` (a 400, never the
    RecursionError 500 a few thousand brackets used to give)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at position {exc.pos}"
        raise BadRequest(f"request body is not valid JSON: {where}") from None
    except RecursionError:
        raise _too_deep(max_depth) from None
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8 JSON") from None
    if _depth(value) > max_depth:
        raise _too_deep(max_depth)
    return value


def _too_deep(max_depth: int) -> BadRequest:
    return BadRequest(f"request body: JSON nested deeper than {max_depth} levels")


def _depth(value: Any) -> int:
    """Nesting depth without recursion (a scalar is 0, ``[]`` is 1)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
