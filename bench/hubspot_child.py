"""One Reflow sync run into the HubSpot fake, in a process of its own.

    python -m bench.hubspot_child --home DIR --database DB --url URL --token TOKEN

Sets up a SQLite state store with the PostgreSQL source (table ``hubspot_people``), a
``hubspot`` destination on the fake and an upsert sync into the fake's ``bench`` object
keyed by its unique ``key`` property, through the services; triggers one run and
executes it in-process. Prints one JSON line: seconds of the run and its counters.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.common import PG

FIELDS = ["key"] + [f"c{i}" for i in range(8)]


def _setup(rt: Any, args: argparse.Namespace) -> tuple[int, int]:
    from reflow.services import bootstrap, destinations, models, sources, syncs

    credentials = {"hostname": PG["host"], "port": PG["port"], "user": PG["user"],
                   "database": args.database}
    workspace_id = bootstrap.initialize(rt.engine).workspace_id
    with rt.session() as session:
        kw = {"workspace_id": workspace_id, "vault": rt.vault}
        source = sources.create(session, type="postgres", credentials=credentials, **kw)
        model = models.create(session, source=source, vault=rt.vault, name="people",
                              query="SELECT * FROM hubspot_people")
        dest = destinations.create(session, type="hubspot", credentials={
            "access_token": args.token, "base_url": args.url}, **kw)
        assert dest.last_test_succeeded, dest.last_test_results
        sync = syncs.create(session, body={
            "operation": "upsert",
            "source_attributes": {"connection_id": source.id,
                                  "object": {"type": "model", "id": model.id}},
            "destination_attributes": {"connection_id": dest.id, "object": "bench"},
            "mappings": [{"from": {"type": "column", "data": c}, "to": c,
                          "is_primary_identifier": c == "key"} for c in FIELDS],
        }, **kw)
        assert sync is not None
        return workspace_id, sync.id


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--home", "--database", "--url", "--token"):
        parser.add_argument(name, required=True)
    parser.add_argument("--profile", help="write a cProfile file of the run here")
    args = parser.parse_args()

    from reflow.config import Settings
    from reflow.db.tables import SyncRun
    from reflow.jobs.planning import execute
    from reflow.runtime import Runtime
    from reflow.services import runs, syncs

    home = Path(args.home)
    rt = Runtime.from_settings(Settings(home=home, secret_key="reflow-bench", log_level="WARNING"))
    workspace_id, sync_id = _setup(rt, args)
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
        print(json.dumps({"seconds": seconds, "status": run.status, "error": run.error_message,
                          "written": run.records_updated, "failed": run.records_failed}))


if __name__ == "__main__":
    main()
