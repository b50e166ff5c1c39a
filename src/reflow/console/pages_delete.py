"""Deleting syncs, sources, destinations and models, through the services the API's
DELETE routes call. A refusal (a source that syncs still read, ...) comes back on the
object's own page, beside its delete form, with the API's message and status."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from reflow.console import pages_connections, pages_models, pages_syncs
from reflow.console.deps import Console, ConsoleRoute, checked_form, console
from reflow.errors import BadRequest, ReflowError
from reflow.services import destinations, models, segments, sources, syncs

router = APIRouter(route_class=ConsoleRoute)


def _delete(ui: Console, form: dict[str, str], remove: Callable[[], None], done: str,
            page: Callable[[], Response]) -> Response:
    ui.require("editor")
    try:
        if form.get("confirm") != "1":
            raise BadRequest("tick the box to confirm the delete")
        remove()
        ui.session.commit()
    except ReflowError as exc:
        ui.session.rollback()
        ui.delete_error = exc.message
        answer = page()
        answer.status_code = exc.status_code
        return answer
    return RedirectResponse(done, status_code=303)


@router.post("/syncs/{sync_id}/delete")
def delete_sync(sync_id: int, form: dict[str, str] = Depends(checked_form),
                ui: Console = Depends(console)) -> Response:
    sync = syncs.get(ui.session, workspace_id=ui.workspace_id, sync_id=sync_id)
    return _delete(ui, form, lambda: syncs.delete(ui.session, sync=sync, runtime=ui.runtime),
                   "/syncs", lambda: pages_syncs.sync_detail(sync_id, page=1, ui=ui))


@router.post("/sources/{source_id}/delete")
def delete_source(source_id: int, form: dict[str, str] = Depends(checked_form),
                  ui: Console = Depends(console)) -> Response:
    source = sources.get(ui.session, workspace_id=ui.workspace_id, source_id=source_id)
    return _delete(ui, form, lambda: sources.delete(ui.session, source=source), "/sources",
                   lambda: pages_connections.source_detail(source_id, ui=ui))


@router.post("/destinations/{destination_id}/delete")
def delete_destination(destination_id: int, form: dict[str, str] = Depends(checked_form),
                       ui: Console = Depends(console)) -> Response:
    row = destinations.get(ui.session, workspace_id=ui.workspace_id,
                           destination_id=destination_id)
    return _delete(ui, form, lambda: destinations.delete(ui.session, destination=row),
                   "/destinations",
                   lambda: pages_connections.destination_detail(destination_id, ui=ui))


@router.post("/models/{model_id}/delete")
def delete_model(model_id: int, form: dict[str, str] = Depends(checked_form),
                 ui: Console = Depends(console)) -> Response:
    model, _ = pages_models.model_of(ui, model_id)

    def remove() -> None:
        segments.ensure_model_unused(ui.session, model=model)
        models.delete(ui.session, model=model)

    return _delete(ui, form, remove, "/models",
                   lambda: pages_models.model_detail(model_id, preview=False, ui=ui))
