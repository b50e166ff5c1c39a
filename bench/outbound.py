"""The outbound address policy's cost: ``outbound_client()`` side by side with a plain
``httpx.Client`` against one loopback HTTP server, printing ratios. Two cases: keep-alive
(the policy runs once per connection) and a new connection per request (it runs on each:
resolve, judge, connect to the judged address). Nothing asserts on time.

    .venv/bin/python -m bench.outbound [--requests 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from reflow.connectors.outbound import Policy
from reflow.connectors.outbound_http import outbound_client


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    wbufsize = 65536  # one segment per response (no delayed-ACK stalls)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def _timed(make: Callable[[], httpx.Client], url: str, requests: int, fresh: bool) -> float:
    started = time.perf_counter()
    client = make()
    for _ in range(requests):
        client.post(url, content=b'{"id":1}', headers={"Connection": "close"} if fresh else {})
    client.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://localhost:{server.server_address[1]}/in"
    policy = Policy.parse(allow="127.0.0.0/8,::1", allow_loopback=False)
    try:
        for fresh in (False, True):
            plain = min(_timed(httpx.Client, url, args.requests, fresh)
                        for _ in range(args.repeat))
            guarded = min(_timed(lambda: outbound_client(policy=policy), url, args.requests,
                                 fresh) for _ in range(args.repeat))
            case = "new connection per request" if fresh else "keep-alive"
            print(f"{case:28s} httpx.Client {plain:6.2f} s   outbound_client {guarded:6.2f} s"
                  f"   ratio {guarded / plain:5.2f}   ({args.requests} requests, best of "
                  f"{args.repeat})")
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
