"""Alerts in settings: every sync's ``alert_attributes``, added and removed through
``syncs.update`` (what ``PATCH /syncs/{id}`` with ``alert_attributes`` calls), so the
API's validation and its messages apply, shown beside the form's fields."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from reflow.console.deps import Console, ConsoleRoute, checked_form, console
from reflow.console.pages_settings import failed
from reflow.errors import BadRequest, ReflowError
from reflow.services import alerts, syncs

router = APIRouter(route_class=ConsoleRoute)
#: The options each alert type takes, as the form names them.
OPTIONS = {
    alerts.INVALID_PERCENT: ("threshold",),
    alerts.DEVIATION: ("threshold", "record_type", "number_of_runs"),
    alerts.RUNTIME: ("threshold", "unit", "start_type"),
    alerts.STATUS: ("status_name",),
}
FIELDS = {"sync_id", "type", "send_for", "threshold", "record_type", "number_of_runs", "unit",
          "start_type", "status_name"}


def _alert(form: dict[str, str]) -> dict[str, Any]:
    kind = form.get("type", "")
    options = {name: form[name].strip() for name in OPTIONS.get(kind, ())
               if form.get(name, "").strip()}
    return {"type": kind, "send_for": form.get("send_for") or "first_time",
            "should_send_recovery": form.get("recovery") == "1", "options": options}


def _sync(ui: Console, raw: str) -> Any:
    if not raw.isdigit():
        raise BadRequest("sync_id: choose a sync")
    return syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=int(raw))


@router.post("/settings/alerts")
def add_alert(form: dict[str, str] = Depends(checked_form),
              ui: Console = Depends(console)) -> Response:
    ui.require("editor")
    try:
        sync = _sync(ui, form.get("sync_id", ""))
        configured = list(sync.alert_attributes or [])
        syncs.update(ui.session, sync=sync, vault=ui.vault,
                     body={"alert_attributes": [*configured, _alert(form)]})
    except ReflowError as exc:
        return failed(ui, exc, "alert", form, FIELDS)
    ui.session.commit()
    return RedirectResponse("/settings#alerts", status_code=303)


@router.post("/settings/alerts/{sync_id}/{alert_id}/delete")
def remove_alert(sync_id: int, alert_id: int, _: dict[str, str] = Depends(checked_form),
                 ui: Console = Depends(console)) -> Response:
    ui.require("editor")
    sync = syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=sync_id)
    kept = [a for a in sync.alert_attributes or [] if a.get("id") != alert_id]
    syncs.update(ui.session, sync=sync, vault=ui.vault, body={"alert_attributes": kept})
    ui.session.commit()
    return RedirectResponse("/settings#alerts", status_code=303)
