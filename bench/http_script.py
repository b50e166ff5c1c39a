"""The anchor of the HTTP destination benchmark: the script a developer would write by
hand instead of running a sync. Reads the model's rows from PostgreSQL, posts them as
JSON arrays of ``--per-request`` records with ``--in-flight`` requests at once over one
keep-alive httpx client, and prints one JSON line: seconds, records, requests.

    python -m bench.http_script --database DB --table model --url URL
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import psycopg
from psycopg.rows import dict_row

from bench.common import PG


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--database", "--table", "--url"):
        parser.add_argument(name, required=True)
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=8)
    args = parser.parse_args()

    start = time.perf_counter()
    records = requests = 0
    limits = httpx.Limits(max_connections=args.in_flight)
    with psycopg.connect(**PG, dbname=args.database) as conn, \
            conn.cursor("rows", row_factory=dict_row) as cur, \
            httpx.Client(limits=limits, timeout=30) as client, \
            ThreadPoolExecutor(args.in_flight) as pool:

        def post(body: bytes) -> None:
            client.post(args.url, content=body,
                        headers={"Content-Type": "application/json"}).raise_for_status()

        cur.execute(f"SELECT * FROM {args.table}")
        pending = []
        while rows := cur.fetchmany(args.per_request):
            pending.append(pool.submit(post, orjson.dumps(rows)))
            records, requests = records + len(rows), requests + 1
            if len(pending) >= 4 * args.in_flight:  # bounded memory, never a barrier
                pending.pop(0).result()
        for future in pending:
            future.result()
    print(json.dumps({"seconds": time.perf_counter() - start, "records": records,
                      "requests": requests}))


if __name__ == "__main__":
    main()
