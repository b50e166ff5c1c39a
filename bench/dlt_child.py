"""The dlt anchor: ``sql_table`` (pyarrow backend) merged into Postgres by primary key.

    python -m bench.dlt_child --database DB --table TABLE --pipelines-dir DIR --dest DATASET

Prints one JSON line with the seconds of ``pipeline.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.common import dsn


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--database", "--table", "--pipelines-dir", "--dest"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

    import dlt
    from dlt.sources.sql_database import sql_table

    table = sql_table(credentials=dsn(args.database), table=args.table, backend="pyarrow",
                      chunk_size=50_000)
    table.apply_hints(primary_key="id", write_disposition="merge")
    pipeline = dlt.pipeline(
        pipeline_name="reflow_bench",
        pipelines_dir=args.pipelines_dir,
        # dlt insists on a password; trust auth ignores it.
        destination=dlt.destinations.postgres(
            credentials=dsn(args.database).replace("postgres@", "postgres:unused@")
        ),
        dataset_name=args.dest,  # a fresh schema per run: every run is a first sync
    )
    start = time.perf_counter()
    pipeline.run(table)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
