"""Syncs, a sync's detail and its runs, a run's detail with its records."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import RedirectResponse, Response

from reflow.console import charts
from reflow.console.deps import Console, ConsoleRoute, checked_form, console, every
from reflow.db.engine import after_commit
from reflow.db.repo import PageParams
from reflow.db.tables import Sync, SyncRun
from reflow.errors import BadRequest
from reflow.services import alerts, destinations, listing, records, runs, sources, syncs
from reflow.services.schedules import schedule_fields
from reflow.services.source_objects import describe

router = APIRouter(route_class=ConsoleRoute)
RECORDS_PER_PAGE = 25


@dataclass
class SyncRow:
    sync: Sync
    last_run: SyncRun | None
    health: str
    source_name: str
    destination_name: str
    schedule: str
    next_run: dt.datetime | None


def schedule_text(mode: dict[str, Any]) -> str:
    fields = schedule_fields(mode)
    freq = fields["schedule_frequency"]
    if freq == "never":
        return "Manual (API or console)"
    if freq == "expression":
        return f"Cron {fields['cron_expression']} (UTC)"
    hour, minute = fields["schedule_hour"] or 0, fields["schedule_minute"] or 0
    at = {"hourly": f" at :{minute:02d}", "daily": f" at {hour:02d}:{minute:02d} UTC",
          "weekly": f" on {fields['schedule_day']} at {hour:02d}:{minute:02d} UTC"}
    return freq.replace("_", " ").capitalize() + at.get(freq, "")


def next_run(sync: Sync, now: dt.datetime) -> dt.datetime | None:
    from reflow.services.schedules import next_run_after, parse_schedule_input

    if sync.paused:
        return None
    return next_run_after(parse_schedule_input({"mode": sync.mode or None} if sync.mode else {}),
                          now)


def health(sync: Sync, last: SyncRun | None) -> str:
    if sync.paused:
        return "paused"
    if last is None:
        return "Ready"
    if last.status in runs.ACTIVE:
        return last.status
    if last.status == "completed" and (last.records_failed or last.source_record_invalids):
        return "partial"
    return {"failed": "Failing", "completed": "Up to Date"}.get(last.status, "Ready")


def _row(sync: Sync, last: SyncRun | None, now: dt.datetime,
         names: dict[tuple[str, int], str]) -> SyncRow:
    return SyncRow(sync, last, health(sync, last), names.get(("s", sync.source_id), "?"),
                   names.get(("d", sync.destination_id), "?"), schedule_text(sync.mode),
                   next_run(sync, now))


def connection_names(ui: Console) -> dict[tuple[str, int], str]:
    names = {("s", s.id): s.label or s.name for s in every(
        lambda p: sources.list_(ui.session, workspace_id=ui.workspace_id, params=p))}
    names.update({("d", d.id): d.name for d in every(
        lambda p: destinations.list_(ui.session, workspace_id=ui.workspace_id, params=p))})
    return names


@router.get("/syncs")
def list_syncs(q: str = Query(""), show: str = Query("all"),
               ui: Console = Depends(console)) -> Response:
    now = dt.datetime.now(dt.UTC)
    names = connection_names(ui)
    found = list(reversed(every(
        lambda p: syncs.list_(ui.session, workspace_id=ui.workspace_id, params=p))))
    # One statement for every sync's last run, as GET /api/v1/syncs does: the page costs
    # the same number of statements for 3 syncs as for 99.
    last = listing.last_runs(ui.session, sync_ids=[s.id for s in found])
    rows = [_row(s, last.get(s.id), now, names) for s in found]
    total = len(rows)
    needle = q.strip().lower()
    if needle:
        rows = [r for r in rows if needle in " ".join(
            [r.sync.label or "", r.sync.destination_object, r.source_name, r.destination_name,
             str(r.sync.id)]).lower()]
    if show in ("Failing", "partial", "paused", "Up to Date", "Ready"):
        rows = [r for r in rows if r.health == show]
    return ui.page("syncs.html", rows=rows, total=total, q=q, show=show, now=now)


@router.get("/syncs/{sync_id}")
def sync_detail(sync_id: int, page: int = Query(1), ui: Console = Depends(console)) -> Response:
    sync = syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=sync_id)
    history = runs.list_for_sync(ui.session, sync=sync, params=PageParams(max(page, 1), 30))
    last = syncs.last_run(ui.session, sync=sync)
    now = dt.datetime.now(dt.UTC)
    return ui.page(
        "sync.html", sync=sync, runs=history.items, pagination=history.pagination(),
        chart=charts.history(history.items), source_object=describe(ui.session, sync=sync),
        source=sources.get(ui.session, workspace_id=ui.workspace_id, source_id=sync.source_id),
        destination=destinations.get(ui.session, workspace_id=ui.workspace_id,
                                     destination_id=sync.destination_id),
        health=health(sync, last), last_run=last, schedule=schedule_text(sync.mode),
        next_run=next_run(sync, now), active=last is not None and last.status in runs.ACTIVE,
        alerts=alerts.list_instances(ui.session, workspace_id=ui.workspace_id, sync_id=sync.id,
                                     params=PageParams(1, 5)).items,
    )


@router.post("/syncs/{sync_id}/trigger")
def trigger(sync_id: int, form: dict[str, str] = Depends(checked_form),
            ui: Console = Depends(console)) -> Response:
    ui.require("operator")
    sync = syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=sync_id)
    run = runs.trigger(ui.session, sync=sync, force_full_sync=form.get("full") == "1",
                       reason={"ui_tag": "Console", "ui_detail": f"Triggered by {ui.who}"})
    if run.status == "queued":
        run_id, runtime = run.id, ui.runtime
        after_commit(ui.session, lambda: runtime.enqueue(run_id))
    ui.session.commit()
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


@router.post("/syncs/{sync_id}/pause")
def pause(sync_id: int, form: dict[str, str] = Depends(checked_form),
          ui: Console = Depends(console)) -> Response:
    ui.require("editor")
    sync = syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=sync_id)
    syncs.update(ui.session, sync=sync, vault=ui.vault, body={"paused": form.get("paused") == "1"})
    ui.session.commit()
    return RedirectResponse(f"/syncs/{sync_id}", status_code=303)


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: int, _: dict[str, str] = Depends(checked_form),
           ui: Console = Depends(console)) -> Response:
    ui.require("operator")
    run = runs.get(ui.session, workspace_id=ui.workspace_id, run_id=run_id)
    runs.request_cancel(ui.session, run=run)
    ui.session.commit()
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


def _run_view(ui: Console, run_id: int) -> dict[str, Any]:
    run = runs.get(ui.session, workspace_id=ui.workspace_id, run_id=run_id)
    sync = syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=run.sync_id)
    return {"run": run, "sync": sync, "active": run.status in runs.ACTIVE}


FAILURE_KINDS = ("rejected", "invalid")


def _filters(status: str) -> records.RecordFilter:
    if status not in FAILURE_KINDS:
        raise BadRequest(f"status must be one of: {', '.join(FAILURE_KINDS)}")
    return records.RecordFilter.parse(status, None, None)


def _run_context(ui: Console, run_id: int, status: str, page: int) -> dict[str, Any]:
    view = _run_view(ui, run_id)
    home = ui.runtime.settings.home
    counts = {k: records.count(ui.session, home=home, run=view["run"], filters=_filters(k))
              for k in FAILURE_KINDS}
    status = status or next((k for k in FAILURE_KINDS if counts[k]), "rejected")
    found = records.list_(ui.session, home=home, run=view["run"], filters=_filters(status),
                          params=PageParams(max(page, 1), RECORDS_PER_PAGE, "asc"))
    return {**view, "records": found.items, "pagination": found.pagination(),
            "record_status": status, "failure_counts": counts}


@router.get("/runs/{run_id}")
def run_detail(run_id: int, status: str = Query(""), page: int = Query(1),
               ui: Console = Depends(console)) -> Response:
    return ui.page("run.html", **_run_context(ui, run_id, status, page))


@router.get("/runs/{run_id}/live")
def run_live(run_id: int, status: str = Query(""), page: int = Query(1),
             ui: Console = Depends(console)) -> Response:
    """The part of the run page htmx re-fetches every 2 s while the run is active; once
    the run has ended the fragment comes back without its polling trigger, so it stops."""
    return ui.page("_run_live.html", **_run_context(ui, run_id, status, page))


def _failures(ui: Console, run: SyncRun) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind in FAILURE_KINDS:
        page = 1
        while True:
            chunk = records.list_(ui.session, home=ui.runtime.settings.home, run=run,
                                  filters=_filters(kind), params=PageParams(page, 100, "asc"))
            out += chunk.items
            if page >= chunk.last_page:
                break
            page += 1
    return out


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (warehouse data is untrusted)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/runs/{run_id}/failures.{fmt}")
def download(run_id: int, fmt: str, ui: Console = Depends(console)) -> Response:
    """Invalid and rejected records with their reasons, as CSV or JSON."""
    run = runs.get(ui.session, workspace_id=ui.workspace_id, run_id=run_id)
    rows = _failures(ui, run)
    name = f"run-{run_id}-failures.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "json":
        return Response(json.dumps(rows, indent=1, default=str), media_type="application/json",
                        headers=headers)
    if fmt != "csv":
        raise BadRequest("format must be csv or json")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["identifier", "status", "operation", "status_message", "record_payload"])
    for r in rows:
        writer.writerow([_cell(r["identifier"]), r["status"], r["operation"],
                         _cell(r["status_message"]), _cell(json.dumps(r["record_payload"],
                                                                      default=str))])
    return Response(buf.getvalue(), media_type="text/csv", headers=headers)
