"""How the in-warehouse diff path's cost grows with the model (issue 14, item 6).

    .venv/bin/python -m bench.scale [--sizes 1000000,5000000,10000000]

PostgreSQL -> PostgreSQL upsert, the 10-column model of bench/common.py, in-warehouse
diff (the default for a PostgreSQL source). For each size, in one invocation and side
by side with its anchors:

* first sync: Reflow vs the limit (COPY out | COPY into a staging table + one
  INSERT ... ON CONFLICT, ``bench.run.limit_full``);
* re-sync with 1% changed: Reflow vs the bare typed diff query
  (``bench.run.bare_diff``, the hashing Reflow itself does, streamed out with COPY).

Each size gets fresh tables (dropped before the next size, to bound the disk), each
Reflow run is a child process (``bench.reflow_child``: its seconds and peak RSS are its
own). Prints seconds, microseconds per row and the ratio to the anchor, so the growth
of each line can be read down its column. Not part of ``make bench`` (10M rows take
~15-25 min on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import common
from bench.run import BARE, bare_diff, checkpoint, limit_full, reflow

_COLS = ", ".join(f"m.{c}" for c in common.COLUMNS)


def _line(label: str, seconds: float, rows: int, extra: str = "") -> None:
    print(f"  {label:<40} {seconds:8.2f} s  {seconds / rows * 1e6:6.2f} us/row  {extra}",
          flush=True)


def one_size(db: str, tmp: Path, rows: int) -> dict[str, float]:
    print(f"\n{rows:,} rows", flush=True)
    with common.connect(db) as conn:
        for table in ("model", "dest_limit", "dest_adv", BARE["typed"][0]):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        # the in-warehouse snapshot of the previous size: a fresh home starts afresh anyway
        common.generate(conn, "model", rows)
        common.create_table(conn, "dest_limit")
        common.create_table(conn, "dest_adv")
    checkpoint(db)
    limit = limit_full(db, "model", "dest_limit")
    _line("first sync: limit (COPY + upsert)", limit, rows)
    with common.connect(db) as conn:
        conn.execute("DROP TABLE dest_limit")
    checkpoint(db)
    home = tmp / f"adv_{rows}"
    first = reflow(home, db, "model", "dest_adv", "advanced")
    assert first["written"] == rows, first
    _line("first sync: reflow, in-warehouse diff", first["seconds"], rows,
          f"x{first['seconds'] / limit:.2f} of limit, peak RSS {first['peak_rss_mb']:.0f} MB")

    with common.connect(db) as conn:
        conn.execute("UPDATE model SET score = score + 1 WHERE id % 100 = 0")
        conn.execute("VACUUM ANALYZE model")
        table, key, hashed = BARE["typed"]
        # the anchor's snapshot is of the model before the change, as Reflow's is
        conn.execute(f"CREATE TABLE {table} AS SELECT {key} AS key,"
                     f" hash_record_extended(ROW({_COLS}), 0) AS hash FROM dest_adv m")
        conn.execute(f"VACUUM ANALYZE {table}")
    checkpoint(db)
    bare, changed_rows = bare_diff(db, "model", "typed")
    _line("1% changed: bare typed diff query", bare, rows, f"{changed_rows:,} rows out")
    checkpoint(db)
    again = reflow(home, db, "model", "dest_adv", "advanced")
    assert again["written"] == rows // 100, again
    _line("1% changed: reflow, in-warehouse diff", again["seconds"], rows,
          f"x{again['seconds'] / bare:.2f} of bare diff, wrote {again['written']:,},"
          f" peak RSS {again['peak_rss_mb']:.0f} MB")
    return {"limit": limit, "first": first["seconds"], "bare": bare,
            "changed": again["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,5000000,10000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    db = common.create_database()
    tmp = Path(tempfile.mkdtemp(prefix="reflow-scale-"))
    print(f"in-warehouse diff at scale, PostgreSQL -> PostgreSQL upsert, 10 columns (db {db})")
    results = {}
    try:
        for rows in sizes:
            results[rows] = one_size(db, tmp, rows)
    finally:
        common.drop_database(db)
    base = sizes[0]
    print(f"\ngrowth against {base:,} rows (time ratio / row ratio; 1.00 = linear)")
    for rows in sizes[1:]:
        scale = rows / base
        growth = "  ".join(f"{name} {results[rows][name] / results[base][name] / scale:.2f}"
                           for name in ("limit", "first", "bare", "changed"))
        print(f"  {rows:>12,}  {growth}")


if __name__ == "__main__":
    main()
