"""An open-loop HTTP load generator: requests leave at a fixed rate whatever the server
does (a closed loop, like wrk's, slows down with the server and hides its queueing).

    python -m bench.loadgen --url http://127.0.0.1:8000 --rate 200 --seconds 15
        [--path /api/v1/syncs --path /api/v1/syncs/1 ...] [--token T] [--timeout 10]

Request i is due at start + i/rate and goes out on an idle keep-alive connection, or a
new one if none is idle (never waits for one). Its latency is measured from when it
was due, not from when it was sent, so a client that falls behind still counts the
delay (no coordinated omission). Paths are used round-robin. Raw asyncio sockets
(uvloop when installed), HTTP/1.1, in a process of its own: the generator must cost
far less than the server. Prints one JSON line: per path and overall p50/p99/max in
ms, requests sent, errors (non-2xx, by status; timeouts; connection errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter, defaultdict
from typing import Any

LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, head: bytes) -> int:
        if self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, head)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                # The server had closed this idle keep-alive connection (uvicorn does
                # after 5 s) before reading the request: retried on a new connection, as
                # HTTP clients do. A response cut short is an error.
                writer.close()
                if getattr(exc, "partial", b""):
                    raise
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._exchange(reader, writer, head)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        head: bytes) -> int:
        writer.write(head)
        status_line_and_headers = await reader.readuntil(b"\r\n\r\n")
        status = int(status_line_and_headers[9:12])
        match = LENGTH.search(status_line_and_headers)
        if match:
            await reader.readexactly(int(match.group(1)))
        if b"connection: close" in status_line_and_headers.lower():
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(url: str, paths: list[str], rate: float, seconds: float, token: str | None,
              timeout: float) -> dict[str, Any]:
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    pool = Pool(host, int(port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    heads = [f"GET {p} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode() for p in paths]
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    total = int(rate * seconds)
    start = time.perf_counter() + 0.1

    async def one(i: int, due: float) -> None:
        path = paths[i % len(paths)]
        try:
            status = await asyncio.wait_for(pool.request(heads[i % len(paths)]), timeout)
        except TimeoutError:
            errors["timeout"] += 1
            return
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] += 1
            return
        if not 200 <= status < 300:
            errors[str(status)] += 1
        latencies[path].append((time.perf_counter() - due) * 1000)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    everything = [v for values in latencies.values() for v in values]
    return {
        "rate": rate, "seconds": seconds, "sent": total,
        "p50_ms": percentile(everything, 0.50), "p99_ms": percentile(everything, 0.99),
        "max_ms": max(everything, default=float("nan")),
        "errors": sum(errors.values()), "error_kinds": dict(errors),
        "paths": {p: {"p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99), "n": len(v)}
                  for p, v in latencies.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", action="append", default=[])
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--token")
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, args.path or ["/"], args.rate, args.seconds, args.token,
                             args.timeout))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
