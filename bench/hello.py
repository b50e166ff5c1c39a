"""The anchor of the API benchmark: uvicorn's hello-world (a bare ASGI app answering a
small JSON body), served by the same uvicorn as ``reflow serve``:

    uvicorn bench.hello:app --port PORT --log-level warning
"""

from __future__ import annotations

from typing import Any

BODY = b'{"status":"success","data":"hello, world"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
