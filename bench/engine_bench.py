"""The engine-side diff path beside its anchors (issue 14, item 5).

    .venv/bin/python -m bench.engine_bench [--rows 1000000] [--rss-rows 5000000]
                                           [--storage local,s3] [--skip-rss]

The path every MySQL, SQLite, DuckDB, Snowflake or read-only source takes: Reflow
reads the model, stages the mapped rows in DuckDB and diffs them against the
snapshot it keeps (engine/snapshot.py). Here the source is PostgreSQL with
``sync_engine: basic`` (the same engine-side path, and the source the anchors read
fastest), the destination PostgreSQL, operation upsert, all ten columns mapped.

Measured in one invocation, each Reflow run in a child process (bench/reflow_child.py:
its seconds and peak RSS are its own), with the snapshot on the local disk and in
S3 (a moto server on loopback, ``REFLOW_STORAGE_URL=s3://...``):

* first sync vs the limit: COPY out of the model into a staging table, one
  INSERT ... ON CONFLICT (``bench.run.limit_full``);
* re-sync with nothing changed, and with 1% changed, vs the bare diff on the engine's
  own store: the model streamed out of PostgreSQL with ADBC (Arrow, as Reflow reads it)
  straight into one DuckDB anti-join against the same snapshot file (a read-only copy
  of the one the local run keeps), with the same key and row hash, changed rows
  fetched as Arrow. That is the least any engine-side diff does: read every row once,
  hash it, probe the snapshot;
* peak RSS of a first sync at --rows and at --rss-rows.

Nothing asserts on time; ratios are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import common
from bench.run import checkpoint, limit_full, reflow
from reflow.engine.snapshot import BASE_MEMORY_MB, MEMORY_MB_PER_COLUMN

BUCKET = "reflow-bench"


@contextlib.contextmanager
def moto_server() -> Iterator[dict[str, str]]:
    """A moto S3 server on loopback, its bucket, and the AWS variables pointing at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = Path(sys.executable).parent / "moto_server"
    # moto stands in for a remote store: at a lower priority, its Python parsing of each
    # upload does not take the measured run's CPU on a 2-core machine (the run still
    # waits for every answer, so its transfers are still in the time).
    proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.nice(10))
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench",
                     ).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bare_diff(db: str, model: str, snapshot: Path, tmp: Path) -> tuple[float, int]:
    """The anchor: ADBC stream of the model into one DuckDB anti-join against a copy of
    the snapshot file, with the key and hash the engine stores (engine/snapshot.py)."""
    import adbc_driver_postgresql.dbapi as adbc
    import duckdb

    copy = tmp / "anchor_snapshot.duckdb"
    shutil.copyfile(snapshot, copy)
    spill = tmp / "anchor_spill"
    spill.mkdir(exist_ok=True)
    fields = ", ".join(f"{c} := m.{c}" for c in common.COLUMNS)
    sql = ("SELECT m.* FROM source m ANTI JOIN snapshot p ON p.key = CAST(m.id AS VARCHAR)"
           f" AND p.hash = hash(struct_pack({fields}))")
    con = duckdb.connect(str(copy), read_only=True)
    # the memory the engine gives DuckDB for a stage of this width (columns, key, hash)
    memory = BASE_MEMORY_MB + MEMORY_MB_PER_COLUMN * (len(common.COLUMNS) + 2)
    con.execute(f"SET memory_limit = '{memory}MB'")
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET preserve_insertion_order = false")
    rows = 0
    start = time.perf_counter()
    with adbc.connect(common.dsn(db)) as pg, pg.cursor() as cur:
        cur.execute(f"SELECT * FROM {model}")
        con.register("source", cur.fetch_record_batch())
        for batch in con.sql(sql).to_arrow_reader(50_000):
            rows += batch.num_rows
    seconds = time.perf_counter() - start
    con.close()
    copy.unlink()
    return seconds, rows


class Homes:
    """One Reflow installation per storage kind, each with its own destination table."""

    def __init__(self, tmp: Path, kinds: list[str], s3_env: dict[str, str] | None,
                 tag: str) -> None:
        self.runs = {kind: (tmp / f"engine_{tag}_{kind}", f"dest_engine_{tag}_{kind}")
                     for kind in kinds}
        # A prefix per installation: each has its own sync ids, so its own snapshot keys.
        self.env = {"local": None, "s3": {**os.environ, **(s3_env or {}),
                                          "REFLOW_STORAGE_URL": f"s3://{BUCKET}/{tag}"}}

    def run(self, kind: str, db: str, model: str) -> dict[str, Any]:
        home, dest = self.runs[kind]
        return reflow(home, db, model, dest, "basic", env=self.env[kind])

    def snapshot(self) -> Path:
        home, _ = self.runs["local"]
        _, sync_id = json.loads((home / "bench.json").read_text())
        return home / "snapshots" / f"sync_{sync_id}.duckdb"


def _line(label: str, seconds: float, extra: str = "") -> None:
    print(f"  {label:<46} {seconds:8.2f} s  {extra}", flush=True)


def run(db: str, tmp: Path, rows: int, rss_rows: int | None, kinds: list[str],
        rss_kinds: list[str] | None = None, repeat: int = 2) -> None:
    """``rss_kinds``: where the snapshot is kept for the --rss-rows first sync (default:
    ``kinds``; ``make bench`` measures it locally only, the S3 one takes ~4 min more).
    Every 1M-row line runs ``repeat`` times alternating with its anchor, and the fastest
    of each is compared: noise on a shared machine only ever slows a run down."""
    print(f"\nengine-side diff (basic): {rows:,} rows, 10 columns, PostgreSQL -> PostgreSQL"
          f" upsert, snapshot {' and '.join(kinds)}, fastest of {repeat}")
    with contextlib.ExitStack() as stack:
        s3_env = stack.enter_context(moto_server()) if "s3" in kinds else None
        with common.connect(db) as conn:
            common.generate(conn, "model_engine", rows)
        rss = _sequence(db, tmp, kinds, s3_env, rows, "model_engine", repeat)
        if rss_rows:
            _rss(db, tmp, rss_kinds or kinds, s3_env, rss_rows, rss)


def _runs(label: str, runs: list[dict[str, Any]], anchor: float, anchor_name: str) -> None:
    best = min(runs, key=lambda r: r["seconds"])
    every = ", ".join(f"{r['seconds']:.2f}" for r in runs)
    _line(label, best["seconds"],
          f"x{best['seconds'] / anchor:.2f} of {anchor_name}, wrote {best['written']:,},"
          f" peak RSS {max(r['peak_rss_mb'] for r in runs):.0f} MB  (runs: {every})")


def _sequence(db: str, tmp: Path, kinds: list[str], s3_env: dict[str, str] | None,
              rows: int, model: str, repeat: int) -> dict[str, float]:
    print("\n first sync")
    limits: list[float] = []
    firsts: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for i in range(repeat):  # each into a fresh table and installation
        homes = Homes(tmp, kinds, s3_env, f"main{i}")
        with common.connect(db) as conn:
            common.create_table(conn, f"dest_engine_limit_{i}")
            for _, dest in homes.runs.values():
                common.create_table(conn, dest)
        checkpoint(db)
        limits.append(limit_full(db, model, f"dest_engine_limit_{i}"))
        for kind in kinds:
            checkpoint(db)
            r = homes.run(kind, db, model)
            assert r["written"] == rows, r
            firsts[kind].append(r)
    limit = min(limits)
    _line("limit: COPY | COPY staging + INSERT..ON CONFLICT", limit,
          "(runs: " + ", ".join(f"{t:.2f}" for t in limits) + ")")
    for kind in kinds:
        _runs(f"reflow engine-side, snapshot {kind}", firsts[kind], limit, "limit")

    for label, expected in (("nothing changed", 0), ("1% changed", rows // 100)):
        print(f"\n re-sync, {label}")
        bares: list[float] = []
        again: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for _ in range(repeat):
            if expected:  # 1% changed again, against the snapshot of the run before
                with common.connect(db) as conn:
                    conn.execute(f"UPDATE {model} SET score = score + 1 WHERE id % 100 = 0")
                    conn.execute(f"VACUUM ANALYZE {model}")
            checkpoint(db)
            bare, n = bare_diff(db, model, homes.snapshot(), tmp)
            assert n == expected, (n, expected)
            bares.append(bare)
            for kind in kinds:
                checkpoint(db)
                r = homes.run(kind, db, model)
                assert r["written"] == expected, r
                again[kind].append(r)
        _line("bare diff: ADBC -> DuckDB anti-join", min(bares),
              f"{expected:,} rows (runs: " + ", ".join(f"{t:.2f}" for t in bares) + ")")
        for kind in kinds:
            _runs(f"reflow engine-side, snapshot {kind}", again[kind], min(bares), "bare diff")
    return {kind: max(r["peak_rss_mb"] for r in firsts[kind]) for kind in kinds}


def _rss(db: str, tmp: Path, kinds: list[str], s3_env: dict[str, str] | None, big: int,
         small: dict[str, float]) -> None:
    print(f"\n peak RSS of an engine-side first sync at {big:,} rows")
    homes = Homes(tmp, kinds, s3_env, "big")
    with common.connect(db) as conn:
        common.generate(conn, "model_engine_big", big)
        for _, dest in homes.runs.values():
            common.create_table(conn, dest)
    for kind in kinds:
        checkpoint(db)
        r = homes.run(kind, db, "model_engine_big")
        assert r["written"] == big, r
        growth = (r["peak_rss_mb"] / small[kind] - 1) * 100
        _line(f"reflow engine-side, snapshot {kind}", r["seconds"],
              f"peak RSS {small[kind]:.0f} MB -> {r['peak_rss_mb']:.0f} MB ({growth:+.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rss-rows", type=int, default=5_000_000)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--storage", default="local,s3")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    db = common.create_database()
    tmp = Path(tempfile.mkdtemp(prefix="reflow-engine-bench-"))
    try:
        run(db, tmp, args.rows, None if args.skip_rss else args.rss_rows,
            args.storage.split(","), repeat=args.repeat)
    finally:
        common.drop_database(db)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
