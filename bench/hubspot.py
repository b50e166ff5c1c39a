"""HubSpot: 100k records into the HubSpot fake, Reflow beside a hand-written httpx script.

    .venv/bin/python -m bench.hubspot [--rows 100000]

(also the last section of ``python -m bench.run``). Two lines:

a) the fake's rate limit lifted: Reflow's records/s beside a script that reads the same
   rows from PostgreSQL and sends the same batch upserts (100 inputs, 8 in flight, one
   keep-alive httpx client), on the same fake: the ratio of their times;
b) HubSpot's documented limit on, its window scaled down fivefold to keep the line short
   (100 requests per 2 s instead of per 10 s: the same shape, five times the rate, a
   ceiling of 5,000 records/s, below what the fake serves on a loaded machine, so the
   limit and not the fake bounds the run): Reflow's
   records/s against the limit-bound ceiling (requests per second x 100 records), the
   busiest window the fake saw (must not exceed the limit), 429s, records lost.

The fake runs in a process of its own (its CPU is not the measured process's), started
fresh for each measurement. Reflow's number is one sync run executed in a child process
(bench.hubspot_child): read, diff, map, write, snapshot commit; the timed section is
``execute`` only, as in the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import common

PY = sys.executable
FIELDS = ["key"] + [f"c{i}" for i in range(8)]
TOKEN = "pat-na1-good"
#: HubSpot's documented Free/Starter window, scaled down fivefold (see the docstring).
SCALED_LIMIT = (100, 2.0)


def make_source(conn: Any, rows: int) -> None:
    cols = ", ".join(f"c{i} text" for i in range(8))
    conn.execute(f"CREATE TABLE hubspot_people (key bigint PRIMARY KEY, {cols})")
    values = ", ".join(f"'v{i}-' || g || '-' || md5(g::text)" for i in range(8))
    conn.execute(f"INSERT INTO hubspot_people SELECT g, {values} FROM generate_series(1, {rows}) g")
    conn.execute("VACUUM ANALYZE hubspot_people")


@contextmanager
def fake(rate_limit: tuple[int, float] | None) -> Iterator[str]:
    cmd = [PY, "-m", "tests.support.fakes.hubspot"]
    if rate_limit:
        cmd += ["--rate-limit", str(rate_limit[0]), str(rate_limit[1])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def stats(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/__fake/stats", timeout=120).json())


def script(url: str, db: str) -> float:
    """The anchor: what a careful engineer writes by hand for the same upserts."""
    start = time.perf_counter()
    with common.connect(db) as conn:
        rows = conn.execute(f"SELECT {', '.join(FIELDS)} FROM hubspot_people").fetchall()
    bodies = []
    for at in range(0, len(rows), 100):
        inputs = [{"id": str(r[0]), "idProperty": "key",
                   "properties": {f"c{i}": r[i + 1] for i in range(8)}}
                  for r in rows[at:at + 100]]
        bodies.append({"inputs": inputs})
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    with httpx.Client(base_url=url, limits=limits, timeout=60,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        def send(body: dict[str, Any]) -> None:
            response = client.post("/crm/v3/objects/bench/batch/upsert", json=body)
            response.raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, bodies))
    return time.perf_counter() - start


def reflow(url: str, db: str, home: Path) -> dict[str, Any]:
    proc = subprocess.run([PY, "-m", "bench.hubspot_child", "--home", str(home), "--database",
                           db, "--url", url, "--token", TOKEN], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"reflow run failed:\n{proc.stderr[-4000:]}")
    result = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    if result["status"] != "completed":
        raise RuntimeError(f"reflow run {result['status']}: {result['error']}")
    return result


def _line(label: str, seconds: float, extra: str = "") -> None:
    print(f"  {label:<44} {seconds:8.2f} s  {extra}", flush=True)


def run(db: str, tmp: Path, rows: int) -> None:
    print(f"\nHubSpot: {rows:,} records, batch upsert by a unique property, into the fake")
    with common.connect(db) as conn:
        make_source(conn, rows)
    with fake(None) as url:
        anchor = script(url, db)
        assert stats(url)["records"]["bench"] == rows
    with fake(None) as url:
        lifted = reflow(url, db, tmp / "hubspot_lifted")
        got = stats(url)["records"]["bench"]
    _line("a) limit lifted: httpx script", anchor, f"{rows / anchor:,.0f} records/s")
    _line("a) limit lifted: reflow", lifted["seconds"],
          f"{rows / lifted['seconds']:,.0f} records/s, x{lifted['seconds'] / anchor:.2f} of the"
          f" script, {got:,} records arrived")
    requests, seconds = SCALED_LIMIT
    with fake(SCALED_LIMIT) as url:
        limited = reflow(url, db, tmp / "hubspot_limited")
        seen = stats(url)
    ceiling = requests / seconds * 100
    rate = rows / limited["seconds"]
    # While delivering: batch requests per second between the first and the last one.
    pace = (seen["writes"] - 1) / seen["write_span"] if seen["write_span"] else 0.0
    _line(f"b) limit {requests}/{seconds:g}s (HubSpot's /10s, scaled): reflow",
          limited["seconds"],
          f"{rate:,.0f} records/s = {rate / ceiling:.1%} of the {ceiling:,.0f}/s ceiling"
          f" (whole run); delivering at {pace:.1f} requests/s = {pace / (requests / seconds):.1%}"
          f" of the limit; busiest {seconds:g}s window {seen['peak']} requests (limit"
          f" {requests}), {seen['throttled']} x 429, {rows - seen['records']['bench']}"
          " records lost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    db = common.create_database()
    tmp = Path(tempfile.mkdtemp(prefix="reflow-bench-hubspot-"))
    try:
        run(db, tmp, args.rows)
    finally:
        common.drop_database(db)


if __name__ == "__main__":
    main()
