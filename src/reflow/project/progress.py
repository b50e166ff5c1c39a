"""``reflow run --wait``: follow a sync run to its end with a live progress bar of
records read, sent and rejected (polling ``GET /sync_runs/{id}``)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from reflow.project.client import Client

TERMINAL = ("completed", "failed", "skipped")


def _counts(run: dict[str, Any]) -> dict[str, int]:
    return {
        "read": int(run.get("source_record_count") or 0),
        "sent": int(run.get("records_processed") or 0),
        "rejected": int(run.get("records_failed") or 0)
        + int(run.get("source_record_invalids") or 0),
    }


def _done(run: dict[str, Any]) -> bool:
    return run["status"] in TERMINAL or bool(run.get("canceled")) and run["status"] != "working"


def follow(client: Client, run_id: int, *, quiet: bool = False, interval: float = 0.5,
           console: Console | None = None) -> dict[str, Any]:
    """Poll until the run ends; the bar's total is the records read once known."""
    console = console or Console(stderr=True)
    if quiet:
        return _poll(client, run_id, interval, lambda _: None)
    columns = (
        TextColumn("run {task.fields[run_id]} [bold]{task.fields[status]}[/]"),
        BarColumn(),
        TextColumn("read {task.fields[read]:,}  sent {task.fields[sent]:,}"
                   "  rejected {task.fields[rejected]:,}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("run", total=None, run_id=run_id, status="queued", read=0, sent=0,
                            rejected=0)

        def show(run: dict[str, Any]) -> None:
            counts = _counts(run)
            total = counts["read"] or None
            status = run.get("current_step") or run["status"]
            handled = counts["sent"] + counts["rejected"]
            completed = total if _done(run) and total else min(handled, total or handled)
            bar.update(task, total=total, completed=completed, status=status,
                       read=counts["read"], sent=counts["sent"], rejected=counts["rejected"])

        final = _poll(client, run_id, interval, show)
        show(final)
        bar.update(task, status=final["status"])
    return final


def _poll(client: Client, run_id: int, interval: float, show: Any) -> dict[str, Any]:
    while True:
        run = client.get(f"/sync_runs/{run_id}")
        show(run)
        if _done(run):
            return run
        time.sleep(interval)
