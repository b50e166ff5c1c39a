"""Reflow side by side with its anchors, PostgreSQL -> PostgreSQL upsert.

    .venv/bin/python -m bench.run [--rows 1000000] [--quick] [--rss-rows 5000000]
                                  [--skip-dlt] [--profile DIR]
                                  [--sections pg,http,hubspot,api,engine]

Creates a scratch database, generates a 10-column model with generate_series, and
measures in one invocation:

* full first sync: Reflow (in-warehouse and engine-side diff) vs the physical limit
  (COPY out | COPY into a staging table + one INSERT ... ON CONFLICT) and dlt;
* re-sync with nothing changed and with 1% changed: Reflow vs the bare SQL diff
  (LEFT JOIN of the model against a key/hash snapshot table), once with md5 of the
  row's text and once with the typed key and 64-bit row hash Reflow itself uses;
* peak RSS of a Reflow full sync at --rows and at --rss-rows;
* the engine-side diff (the path of sources without in-warehouse bookkeeping) beside
  the limit and a bare DuckDB diff, snapshot local and in moto S3 (bench/engine_bench.py);
* the HTTP Request destination beside a hand-written httpx script (bench/http_bench.py);
* the API beside uvicorn's hello-world at fixed request rates (bench/api_bench.py).

Each Reflow run and the dlt run execute in a child process, so their peak RSS is
theirs alone. Nothing here asserts on time; it prints ratios. The database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import api_bench, common, http_bench

PY = sys.executable


def limit_full(db: str, model: str, dest: str) -> float:
    """COPY out of the model straight into a staging table, then one upsert."""
    out: dict[str, float] = {}
    cols = list(common.COLUMNS)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id")
    with common.connect(db) as src, common.connect(db, autocommit=False) as dst, \
            common.timed(out, "t"):
        dst.execute(f"CREATE TEMP TABLE stage (LIKE {dest}) ON COMMIT DROP")
        with src.cursor().copy(f"COPY (SELECT * FROM {model}) TO STDOUT") as reader, \
                dst.cursor().copy("COPY stage FROM STDIN") as writer:
            for chunk in reader:
                writer.write(chunk)
        dst.execute(f"INSERT INTO {dest} SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET {sets}")
        dst.commit()
    return out["t"]


#: The bare diff, two ways: as the issue states it (text key, md5 of the row's text)
#: and with what Reflow's in-warehouse diff uses (the key's own type, the row's
#: 64-bit hash from its types' hash functions, the same work_mem). The second is the
#: stricter anchor: Reflow's ratio against it is the cost of Reflow itself.
_COLS = ", ".join(f"m.{c}" for c in common.COLUMNS)
BARE = {
    "md5": ("bare_snapshot", "m.id::text", "md5(ROW(m.*)::text)"),
    "typed": ("bare_snapshot_typed", "m.id", f"hash_record_extended(ROW({_COLS}), 0)"),
}


def bare_diff_setup(db: str, model: str) -> None:
    with common.connect(db) as conn:
        for table, key, hashed in BARE.values():
            conn.execute(f"CREATE TABLE {table} AS SELECT {key} AS key, {hashed} AS hash"
                         f" FROM {model} m")
            conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (key)")
            conn.execute(f"VACUUM ANALYZE {table}")


def bare_diff(db: str, model: str, kind: str) -> tuple[float, int]:
    """The diff alone: changed rows leave the database, nothing else happens."""
    table, key, hashed = BARE[kind]
    out: dict[str, float] = {}
    rows = 0
    sql = (
        f"SELECT m.* FROM {model} m LEFT JOIN {table} p ON p.key = {key}"
        f" WHERE p.hash IS DISTINCT FROM {hashed}"
    )
    with common.connect(db) as conn:
        if kind == "typed":
            conn.execute("SET work_mem = '64MB'")
        with common.timed(out, "t"), conn.cursor().copy(f"COPY ({sql}) TO STDOUT") as reader:
            for chunk in reader:
                rows += bytes(chunk).count(b"\n")
    return out["t"], rows


def resync(db: str, tmp: Path, label: str, name: str, p: Any, adv_home: str,
           adv_dest: str) -> None:
    checkpoint(db)
    bare = {kind: bare_diff(db, "model", kind) for kind in BARE}
    for kind, (seconds, n) in bare.items():
        _line(f"bare diff query ({kind})", seconds, f"{n} rows")
    for engine, home, dest in (("in-warehouse", adv_home, adv_dest),
                               ("engine-side", "basic", "dest_basic")):
        checkpoint(db)
        r = reflow(tmp / home, db, "model", dest, "basic" if home == "basic" else "advanced",
                   p(f"{name}_{home}"))
        zero = "" if label != "nothing" or r["written"] == 0 else "  <-- EXPECTED ZERO"
        _line(f"reflow, {engine} diff", r["seconds"],
              f"x{r['seconds'] / bare['typed'][0]:.2f} of bare diff (typed),"
              f" x{r['seconds'] / bare['md5'][0]:.2f} (md5), wrote {r['written']} rows{zero}")


def reflow(home: Path, db: str, model: str, dest: str, engine: str,
           profile: str | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [PY, "-m", "bench.reflow_child", "--home", str(home), "--database", db,
           "--model", model, "--dest", dest, "--engine", engine]
    if profile:
        cmd += ["--profile", profile]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"reflow run failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["status"] != "completed":
        raise RuntimeError(f"reflow run {result['status']}: {result['error']}")
    return result


def dlt_full(db: str, model: str, tmp: Path, dest: str) -> float:
    proc = subprocess.run(
        [PY, "-m", "bench.dlt_child", "--database", db, "--table", model,
         "--pipelines-dir", str(tmp / "dlt"), "--dest", dest],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dlt failed:\n{proc.stderr[-4000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def checkpoint(db: str) -> None:
    """Before each timed first sync: the previous one's dirty pages and WAL are
    flushed now, not by a checkpoint that lands in the middle of the next one (that
    alone moved the limit between 6.7 and 9.5 s)."""
    with common.connect(db) as conn:
        conn.execute("CHECKPOINT")


def _all(seconds: list[float]) -> str:
    return "(runs: " + ", ".join(f"{s:.2f}" for s in seconds) + ")" if len(seconds) > 1 else ""


def _line(label: str, seconds: float, extra: str = "") -> None:
    print(f"  {label:<44} {seconds:8.2f} s  {extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rss-rows", type=int, default=5_000_000)
    parser.add_argument("--quick", action="store_true", help="100k rows, RSS at 100k and 500k")
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument("--repeat", type=int, default=2,
                        help="first syncs of each kind (the fastest is compared)")
    parser.add_argument("--rss-engine-side", action="store_true",
                        help="also measure the engine-side diff at --rss-rows (slow)")
    parser.add_argument("--profile", help="write cProfile files of the Reflow runs here")
    parser.add_argument("--skip-hubspot", action="store_true",
                        help="leave out the HubSpot lines (bench.hubspot)")
    parser.add_argument("--hubspot-rows", type=int, default=100_000)
    parser.add_argument("--sections", default="pg,http,hubspot,api,engine",
                        help="comma-separated: pg (PostgreSQL -> PostgreSQL), http (HTTP "
                        "destination vs an httpx script), hubspot (100k records into the "
                        "HubSpot fake vs an httpx script, and under its rate limit), api (API "
                        "vs uvicorn hello-world), engine (engine-side diff vs the limit and "
                        "a bare DuckDB diff, snapshot local and in moto S3: bench/engine_bench.py)")
    parser.add_argument("--engine-storage", default="local,s3",
                        help="engine section: where the snapshot is kept (local, s3)")
    parser.add_argument("--engine-rss-storage", default="local",
                        help="engine section: where the snapshot is kept for the RSS run at "
                        "--rss-rows (the S3 one adds ~4 min; python -m bench.engine_bench "
                        "measures both)")
    parser.add_argument("--http-rows", type=int, default=200_000)
    parser.add_argument("--api-seconds", type=float, default=15,
                        help="seconds per request rate (--quick: 5)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.rss_rows, args.api_seconds = 100_000, 500_000, 5
    sections = set(args.sections.split(","))

    db = common.create_database()
    tmp = Path(tempfile.mkdtemp(prefix="reflow-bench-"))
    prof = Path(args.profile) if args.profile else None
    if prof:
        prof.mkdir(parents=True, exist_ok=True)
    try:
        if "pg" in sections:
            run(args, db, tmp, prof)
        if "http" in sections:
            http_bench.run(db, tmp, args.http_rows, args.repeat, prof)
        if "engine" in sections:
            from bench import engine_bench  # it builds on this module's anchors

            engine_bench.run(db, tmp, args.rows, args.rss_rows, args.engine_storage.split(","),
                             args.engine_rss_storage.split(","), repeat=args.repeat)
        if "hubspot" in sections and not args.skip_hubspot:
            from bench import hubspot

            hubspot.run(db, tmp, args.hubspot_rows)
    finally:
        common.drop_database(db)
    if "api" in sections:
        api_bench.run(seconds=args.api_seconds)


def run(args: argparse.Namespace, db: str, tmp: Path, prof: Path | None) -> None:
    rows = args.rows
    print(f"reflow bench: {rows:,} rows, 10 columns, PostgreSQL -> PostgreSQL upsert (db {db})")
    repeat = args.repeat
    with common.connect(db) as conn:
        common.generate(conn, "model", rows)
        for i in range(repeat):
            for dest in ("dest_limit", "dest_adv"):
                common.create_table(conn, f"{dest}_{i}")
        common.create_table(conn, "dest_basic")

    def p(name: str) -> str | None:
        return str(prof / f"{name}.prof") if prof else None

    # Each first sync runs `repeat` times, alternating with its anchors, into a fresh
    # table (and, for Reflow, a fresh installation): the machine's noise only ever
    # slows a run down, so the fastest of each is compared.
    print(f"\nfull first sync (fastest of {repeat})")
    limits, advs, dlts = [], [], []
    for i in range(repeat):
        checkpoint(db)
        limits.append(limit_full(db, "model", f"dest_limit_{i}"))
        checkpoint(db)
        advs.append(reflow(tmp / f"adv_{i}", db, "model", f"dest_adv_{i}", "advanced",
                           p(f"full_adv_{i}")))
        if not args.skip_dlt:
            checkpoint(db)
            dlts.append(dlt_full(db, "model", tmp / f"dlt_{i}", f"dest_dlt_{i}"))
    limit = min(limits)
    adv = min(advs, key=lambda r: r["seconds"])
    _line("limit: COPY | COPY staging + INSERT..ON CONFLICT", limit, _all(limits))
    _line("reflow, in-warehouse diff", adv["seconds"],
          f"x{adv['seconds'] / limit:.2f} of limit, peak RSS {adv['peak_rss_mb']:.0f} MB"
          f"  {_all([r['seconds'] for r in advs])}")
    checkpoint(db)
    basic = reflow(tmp / "basic", db, "model", "dest_basic", "basic", p("full_basic"))
    _line("reflow, engine-side diff (once)", basic["seconds"],
          f"x{basic['seconds'] / limit:.2f} of limit, peak RSS {basic['peak_rss_mb']:.0f} MB")
    for r in (*advs, basic):
        assert r["written"] == rows, r
    if dlts:
        dlt = min(dlts)
        _line("dlt sql_table(pyarrow) merge", dlt,
              f"dlt/reflow = {dlt / adv['seconds']:.2f} (in-warehouse),"
              f" {dlt / basic['seconds']:.2f} (engine-side)  {_all(dlts)}")
    last = repeat - 1
    adv_home, adv_dest = f"adv_{last}", f"dest_adv_{last}"

    print("\nre-sync, nothing changed")
    bare_diff_setup(db, "model")
    resync(db, tmp, "nothing", "nochange", p, adv_home, adv_dest)

    print("\nre-sync, 1% changed")
    with common.connect(db) as conn:
        conn.execute("UPDATE model SET score = score + 1 WHERE id % 100 = 0")
    resync(db, tmp, "changed", "changed", p, adv_home, adv_dest)

    rss(args, db, tmp, {"advanced": adv["peak_rss_mb"], "basic": basic["peak_rss_mb"]})


def rss(args: argparse.Namespace, db: str, tmp: Path, small: dict[str, float]) -> None:
    big = args.rss_rows
    print(f"\npeak RSS of a full sync, {args.rows:,} -> {big:,} rows")
    with common.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS bare_snapshot, bare_snapshot_typed")
        common.generate(conn, "model_big", big)
        for dest in ("dest_big_advanced", "dest_big_basic"):
            common.create_table(conn, dest)
    engines = [("advanced", "in-warehouse")]
    if args.rss_engine_side:
        engines.append(("basic", "engine-side"))
    for engine, label in engines:
        r = reflow(tmp / f"big_{engine}", db, "model_big", f"dest_big_{engine}", engine)
        growth = (r["peak_rss_mb"] / small[engine] - 1) * 100
        _line(f"reflow, {label} diff", r["seconds"],
              f"peak RSS {small[engine]:.0f} MB -> {r['peak_rss_mb']:.0f} MB ({growth:+.1f}%)")


if __name__ == "__main__":
    main()
