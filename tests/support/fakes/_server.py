"""What the HubSpot, Braze and Segment fakes share: a threading HTTP/1.1 server on
loopback (keep-alive, as the vendors' APIs are used) that hands each request to the
fake's ``route`` and writes its JSON answer, and deterministic 5xx blips."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Incoming:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    #: When the request line arrived (a vendor counts requests at its edge, before the
    #: body is read or handled).
    received: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class Blips:
    """Deterministic server errors: ``arm(n, status)`` makes the next n data requests
    answer ``status``; ``every(k, status)`` makes every k-th one do so."""

    def __init__(self) -> None:
        self._next: list[int] = []
        self._every: tuple[int, int] | None = None
        self._count = 0
        self._lock = threading.Lock()

    def arm(self, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._next += [status] * n

    def every(self, k: int | None, status: int = 502) -> None:
        with self._lock:
            self._every = (k, status) if k else None

    def take(self) -> int | None:
        with self._lock:
            self._count += 1
            if self._next:
                return self._next.pop(0)
            if self._every and self._count % self._every[0] == 0:
                return self._every[1]
            return None


class FakeServer:
    """Subclasses implement ``route``; ``with Fake() as fake:`` serves on ``fake.url``."""

    def __init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: without this, Nagle's algorithm and the
            # client's delayed ACK hold each answer ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *_: Any) -> None:
                pass

            def _handle(self) -> None:
                received = time.monotonic()
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                incoming = Incoming(self.command, url.path, query,
                                    {k.lower(): v for k, v in self.headers.items()}, body,
                                    received)
                reply = fake.route(incoming)
                data = b"" if reply.payload is None else json.dumps(reply.payload).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, request: Incoming) -> Reply:
        raise NotImplementedError

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
