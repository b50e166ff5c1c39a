"""The client commands of ``reflow``: export, plan, apply, schema (config as code) and
run, runs, rejected (sync runs from a terminal). Each talks to a server over HTTP.

Exit codes: 0 success (plan: no changes), 1 error, 2 plan has changes, 3 a run
rejected more records than ``--max-rejected``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reflow.project import applier, exporter, planner, remote
from reflow.project.client import ApiError, Client
from reflow.project.loader import ProjectError, load

EXIT_CHANGES = 2
EXIT_REJECTED = 3


def client_of(args: argparse.Namespace) -> Client | None:
    if not args.token:
        print(f"reflow {args.command}: give a workspace token with --token or REFLOW_TOKEN",
              file=sys.stderr)
        return None
    return Client(args.url, args.token)


def _fail(command: str, message: str) -> int:
    print(f"reflow {command}: {message}", file=sys.stderr)
    return 1


def run_command(args: argparse.Namespace) -> int:
    """Dispatch one client command; every expected failure is a message and exit 1."""
    handler = COMMANDS[args.command]
    if args.command == "schema":  # the one command without a server
        return schema(args, None)
    client = client_of(args)
    if client is None:
        return 1
    try:
        with client:
            return handler(args, client)
    except ProjectError as exc:
        return _fail(args.command, "the project has problems:\n  " + "\n  ".join(exc.problems))
    except ApiError as exc:
        return _fail(args.command, str(exc))
    except OSError as exc:  # a folder that cannot be written or read
        return _fail(args.command, str(exc))


def schema(args: argparse.Namespace, _: Client | None) -> int:
    from reflow.project.schema import json_schema_text

    sys.stdout.write(json_schema_text())
    return 0


def export(args: argparse.Namespace, client: Client) -> int:
    written, notes = exporter.export(remote.fetch(client), Path(args.dir))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"Exported {len(written)} files to {args.dir}")
    return 0


def plan(args: argparse.Namespace, client: Client) -> int:
    project = load(Path(args.dir))
    result = planner.build(project, remote.fetch(client), prune=args.prune,
                           rotate_secrets=args.rotate_secrets)
    if result.problems:
        raise ProjectError(result.problems)
    print(json.dumps(planner.as_json(result)) if args.json else planner.render(result))
    return EXIT_CHANGES if result.pending else 0


def apply(args: argparse.Namespace, client: Client) -> int:
    project = load(Path(args.dir))
    state = remote.fetch(client)
    result = planner.build(project, state, prune=args.prune, strict_env=True,
                           rotate_secrets=args.rotate_secrets)
    if result.problems:
        raise ProjectError(result.problems)
    print(planner.render(result))
    worker = applier.Applier(client, state)
    dbt_sources = [s for s, i in project.items["source"].items() if i.spec.dbt_manifest]
    try:  # manifests first: syncs on dbt models are validated against what they list now
        for line in worker.refresh_dbt(dbt_sources):
            print(f"  ok      {line}")
    except ValueError as exc:
        raise ProjectError([str(exc), "nothing else was changed"]) from None
    problems = worker.validate(result)
    if problems:
        raise ProjectError(problems + ["nothing was changed" if not dbt_sources
                                       else "nothing was changed but the dbt refreshes above"])
    if not result.pending:
        print("Nothing to apply.")
        return 0
    outcome = worker.apply(result)
    print(applier.render(outcome))
    return 1 if outcome.failed else 0


# -- sync runs ------------------------------------------------------------------------

def _sync_id(client: Client, ref: str) -> int:
    if ref.isdigit():
        return int(ref)
    found = remote.fetch(client).id_of("sync", ref)
    if found is None:
        raise ApiError("GET", "/syncs", 404, f"no sync with slug {ref!r}")
    return found


def _rejected(run: dict[str, Any]) -> int:
    return int(run.get("records_failed") or 0) + int(run.get("source_record_invalids") or 0)


def run(args: argparse.Namespace, client: Client) -> int:
    from reflow.project.progress import follow

    sync_id = _sync_id(client, args.sync)
    path = f"/syncs/{sync_id}/trigger"
    run_id = client.post(path + ("?force_full_sync=true" if args.full else ""))["sync_run_id"]
    if not args.wait:
        print(json.dumps({"sync_run_id": run_id}) if args.json else f"sync run {run_id} queued")
        return 0
    final = follow(client, run_id, quiet=args.json, interval=args.interval)
    if args.json:
        print(json.dumps(final))
    return _run_exit(final, args.max_rejected)


def _run_exit(final: dict[str, Any], max_rejected: int | None) -> int:
    if final["status"] != "completed":
        print(f"sync run {final['id']} {final['status']}: {final.get('error_message') or ''}",
              file=sys.stderr)
        return 1
    if max_rejected is not None and _rejected(final) > max_rejected:
        print(f"sync run {final['id']} rejected {_rejected(final)} records"
              f" (more than --max-rejected {max_rejected})", file=sys.stderr)
        return EXIT_REJECTED
    return 0


def runs(args: argparse.Namespace, client: Client) -> int:
    sync_id = _sync_id(client, args.sync)
    body = client.request("GET", f"/syncs/{sync_id}/sync_runs",
                          params={"per_page": args.limit, "order": "desc"})
    items = body.get("data") or []
    if args.json:
        print(json.dumps(items))
        return 0
    columns = ("id", "status", "created_at", "read", "sent", "rejected", "error")
    rows = [(r["id"], r["status"], r["created_at"], r.get("source_record_count"),
             r.get("records_processed"), _rejected(r), r.get("error_message") or "")
            for r in items]
    _table(f"Runs of sync {sync_id}", columns, rows)
    return 0


def rejected(args: argparse.Namespace, client: Client) -> int:
    # Without a status filter the API lists succeeded records too.
    items = [r for status in ([args.status] if args.status else ["rejected", "invalid"])
             for r in client.list_all(f"/sync_runs/{args.run}/records", status=status)]
    if args.json:
        print(json.dumps(items))
        return 0
    columns = ("identifier", "status", "operation", "message")
    rows = [(r.get("identifier"), r.get("status"), r.get("operation"),
             r.get("status_message") or "") for r in items]
    _table(f"Rejected records of run {args.run}", columns, rows)
    return 0


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in columns:
        table.add_column(name)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


COMMANDS: dict[str, Callable[[argparse.Namespace, Any], int]] = {
    "schema": schema, "export": export, "plan": plan, "apply": apply, "run": run,
    "runs": runs, "rejected": rejected,
}
