"""A no-op HTTP/1.1 server for the HTTP destination benchmark, in a process of its own
(so it does not share a GIL with what it measures).

    python -m bench.http_sink --port-file FILE

Answers every request ``200 ok`` with keep-alive, on raw asyncio protocols (uvloop when
installed): the fastest receiver Python offers, so the benchmark measures the sender.
``GET /stats`` answers ``{"requests": N, "bytes": M}`` (requests with a body only) and
``POST /reset`` zeroes them; the runner checks that every batch arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
LENGTH = re.compile(rb"content-length:\s*(\d+)")
STATS = {"requests": 0, "bytes": 0}


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            match = LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            self._answer(head, length)

    def _answer(self, head: bytes, length: int) -> None:
        assert self.transport is not None
        if head.startswith(b"get /stats"):
            body = json.dumps(STATS).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
            return
        if head.startswith(b"post /reset"):
            STATS.update(requests=0, bytes=0)
        elif length:
            STATS["requests"] += 1
            STATS["bytes"] += length
        self.transport.write(OK)


async def serve(port_file: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    port_file.write_text(str(port))
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(Path(args.port_file)))


if __name__ == "__main__":
    main()
