"""A request that fails after its retries ends the run with a message the API returns to
anyone who reads runs: the URL in it carries no userinfo and no query value (issue 17)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reflow.connectors.destinations._sending import (
    Request,
    Sender,
    TokenBucket,
    http_client,
    shown_url,
)
from reflow.connectors.errors import TransientError


@pytest.fixture
def unavailable() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_failure_message_hides_the_secrets_of_the_url(unavailable: str) -> None:
    host = unavailable.removeprefix("http://")
    url = f"http://user:hunter2@{host}/v1/items?api_key=SECRET-KEY&page=1"
    sender = Sender(http_client(headers={}, timeout=5, concurrency=1),
                    bucket=TokenBucket(None, clock=time.monotonic, sleep=time.sleep),
                    max_retries=1, concurrency=1, sleep=lambda _: None)
    with pytest.raises(TransientError) as failure:
        sender.send(Request("POST", url, b"[]", {"Content-Type": "application/json"}, [0]))
    sender.close()
    message = str(failure.value)
    assert "SECRET-KEY" not in message and "hunter2" not in message, message
    assert f"http://{host}/v1/items?api_key=***&page=***" in message


def test_shown_url_keeps_what_locates_the_endpoint() -> None:
    assert shown_url("https://api.example.com/v2/x") == "https://api.example.com/v2/x"
    assert shown_url("https://a:b@api.example.com:8443/p?k=v") == (
        "https://api.example.com:8443/p?k=***")
