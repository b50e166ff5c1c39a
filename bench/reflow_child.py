"""One Reflow sync run in a process of its own (so its peak RSS is its own).

    python -m bench.reflow_child --home DIR --database DB --model TABLE --dest TABLE
        --engine advanced|basic [--profile FILE] [--http-url URL --per-request N --in-flight N]

The first call in a home sets up the state store (SQLite), source, model,
destination (PostgreSQL, or HTTP Request with --http-url) and an upsert sync through
the services, in a process of its own (``--setup``): a worker executing runs never
does that, and its validation and ORM objects are not part of a run's memory. Every
call then triggers one run and executes it in-process through the engine (read, map,
diff, write, snapshot commit). Prints one JSON line: seconds of the run, its counters,
peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import COLUMNS, PG


def _setup(rt: Any, args: argparse.Namespace) -> int:
    from reflow.services import bootstrap, destinations, models, sources, syncs

    credentials = {"hostname": PG["host"], "port": PG["port"], "user": PG["user"],
                   "database": args.database}
    workspace_id = bootstrap.initialize(rt.engine).workspace_id
    with rt.session() as session:
        kw = {"workspace_id": workspace_id, "vault": rt.vault}
        source = sources.create(session, type="postgres", credentials=credentials,
                                sync_engine=args.engine, **kw)
        model = models.create(session, source=source, vault=rt.vault, name="bench",
                              query=f"SELECT * FROM {args.model}")
        if args.http_url:  # HTTP Request: JSON arrays of --per-request records
            dest = destinations.create(session, type="http_request", credentials={
                "base_url": args.http_url, "concurrency": args.in_flight}, **kw)
            target: dict[str, object] = {"object": "request", "advanced_configuration": {
                "records_per_request": "multiple", "batch_size": args.per_request,
                "concurrency": args.in_flight}}
        else:
            dest = destinations.create(session, type="postgres", credentials=credentials, **kw)
            target = {"object": f"public.{args.dest}"}
        mappings = [
            {"from": {"type": "column", "data": c}, "to": c, "is_primary_identifier": c == "id"}
            for c in COLUMNS
        ]
        sync = syncs.create(session, body={
            "operation": "upsert",
            "source_attributes": {"connection_id": source.id,
                                  "object": {"type": "model", "id": model.id}},
            "destination_attributes": {"connection_id": dest.id, "object": target["object"]},
            "mappings": mappings,
            **{k: v for k, v in target.items() if k != "object"},
        }, **kw)
        assert sync is not None
        return (workspace_id, sync.id)


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM). Not ``ru_maxrss``: Linux
    carries the parent's high-water mark over fork and exec, so a child of a 400 MB
    bench process reported at least 400 MB whatever it used."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--home", "--database", "--model", "--dest", "--engine"):
        parser.add_argument(name, required=True)
    parser.add_argument("--profile")
    parser.add_argument("--http-url", help="write to an HTTP Request destination at this URL")
    parser.add_argument("--per-request", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--setup", action="store_true", help="only set the home up")
    args = parser.parse_args()
    home = Path(args.home)
    state = home / "bench.json"
    if not args.setup and not state.exists():
        subprocess.run([sys.executable, "-m", "bench.reflow_child", *sys.argv[1:], "--setup"],
                       check=True)

    from reflow.config import Settings
    from reflow.db.tables import SyncRun
    from reflow.jobs.planning import execute
    from reflow.runtime import Runtime
    from reflow.services import runs, syncs

    rt = Runtime.from_settings(Settings(home=home, secret_key="reflow-bench", log_level="WARNING"))
    if args.setup:
        state.write_text(json.dumps(_setup(rt, args)))
        return
    workspace_id, sync_id = json.loads(state.read_text())
    with rt.session() as session:
        sync = syncs.get(session, workspace_id=workspace_id, sync_id=sync_id)
        run_id = runs.trigger(session, sync=sync).id

    start = time.perf_counter()
    if args.profile:
        import cProfile

        cProfile.runctx("execute(rt, run_id)", globals(), locals(), args.profile)
    else:
        execute(rt, run_id)
    seconds = time.perf_counter() - start

    with rt.session() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        result = {
            "seconds": seconds,
            "status": run.status,
            "error": run.error_message,
            "source_records": run.source_record_count,
            "changed": run.source_record_updates,
            "written": run.records_updated,
            "full_sync": run.full_sync,
            "peak_rss_mb": peak_rss_mb(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
