"""Sync lifecycle events: recorded once in the webhook outbox, then delivered by the
deliverer thread (``jobs/deliverer.py``).

The hooks (``run_triggered``, ``run_started``, ``run_finished``/``run_ended``) are called
after the run's own transaction committed, each in its own transaction, and never raise: an
event must never fail or block a run. Each is idempotent: an event is keyed by
``dedupe_key`` (unique), so a hook called twice records nothing new.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from reflow.db.tables import Sync, SyncRun, utcnow
from reflow.db.tables_hooks import AlertInstance, Webhook, WebhookDelivery, WebhookEvent
from reflow.runtime import Runtime
from reflow.services import alerts

log = logging.getLogger(__name__)

EVENTS = (
    "sync.triggered",
    "sync.started",
    "sync.completed",
    "sync.success",
    "sync.failed",
    "sync.alert.raised",
    "sync.alert.resolved",
)
#: How many earlier runs alert evaluation looks at (deviation alerts compare to them).
HISTORY = 50

_wakeups: set[threading.Event] = set()
_wakeups_lock = threading.Lock()


def subscribe_wakeup(event: threading.Event) -> None:
    with _wakeups_lock:
        _wakeups.add(event)


def unsubscribe_wakeup(event: threading.Event) -> None:
    with _wakeups_lock:
        _wakeups.discard(event)


def wake() -> None:
    """Tell deliverers in this process that deliveries are due (others poll)."""
    with _wakeups_lock:
        for event in _wakeups:
            event.set()


# --- hooks ------------------------------------------------------------------------


def run_triggered(bind: Engine | Connection, run_id: int) -> None:
    """``sync.triggered``: the run was queued. Called from ``services.runs.trigger``."""
    try:
        with Session(bind) as session, session.begin():
            run = session.get(SyncRun, run_id)
            if run is not None:
                emit(session, run=run, event="sync.triggered")
        wake()
    except Exception:
        log.exception("recording sync.triggered for run %s failed; the run is unaffected", run_id)


def run_started(runtime: Runtime, run_id: int) -> None:
    """``sync.started`` and started-status alerts. Called from ``jobs.progress.claim``."""
    try:
        with runtime.session() as session:
            run = session.get(SyncRun, run_id)
            if run is not None and emit(session, run=run, event="sync.started"):
                apply_alerts(session, run=run, phase="started", public_url=_public(runtime))
        wake()
    except Exception:
        log.exception("recording sync.started for run %s failed; the run is unaffected", run_id)


def run_finished(runtime: Runtime, run_id: int) -> None:
    """The end of a run (see :func:`run_ended`). Called from ``jobs.progress.finish``,
    and for runs failed outside the engine: orphans of a crash, runs whose worker was
    lost."""
    run_ended(runtime.engine, run_id, public_url=_public(runtime))


def run_ended(bind: Engine | Connection, run_id: int, *, public_url: str = "") -> None:
    """``sync.completed``, ``sync.success``/``sync.failed`` and alert evaluation, for
    whatever ended the run. A skipped run only gets ``sync.completed`` with status
    ``ok``: it neither succeeded nor failed, and changes no alert. Also called from
    ``services.runs`` for runs skipped at trigger and runs canceled while queued."""
    try:
        with Session(bind) as session, session.begin():
            run = session.get(SyncRun, run_id)
            if run is None or run.status not in ("completed", "failed", "skipped"):
                return
            ok = run.status != "failed"
            if not emit(
                session,
                run=run,
                event="sync.completed",
                extra={"status": "ok" if ok else "emergency"},
            ):
                return
            if run.status != "skipped":
                emit(session, run=run, event="sync.success" if ok else "sync.failed")
                apply_alerts(session, run=run, phase="finished", public_url=public_url)
        wake()
    except Exception:
        log.exception("recording events of run %s failed; the run is unaffected", run_id)


def _public(runtime: Runtime) -> str:
    return (runtime.settings.public_url or "").rstrip("/")


# --- recording --------------------------------------------------------------------


def emit(
    session: Session,
    *,
    run: SyncRun,
    event: str,
    extra: dict[str, Any] | None = None,
    dedupe: str | None = None,
) -> bool:
    """Record ``event`` for ``run`` and queue a delivery per subscribed webhook.
    False when this event was already recorded."""
    key = f"run:{run.id}:{dedupe or event}"
    if session.scalar(select(WebhookEvent.id).where(WebhookEvent.dedupe_key == key)):
        return False
    payload = {
        "workspace_id": run.workspace_id,
        "sync_id": run.sync_id,
        "sync_run_id": run.id,
        **(extra or {}),
        "event": event,
    }
    row = WebhookEvent(
        workspace_id=run.workspace_id,
        event=event,
        sync_id=run.sync_id,
        sync_run_id=run.id,
        dedupe_key=key,
        body=json.dumps(payload),
    )
    session.add(row)
    session.flush()
    hooks = session.scalars(select(Webhook).where(Webhook.workspace_id == run.workspace_id))
    for hook in hooks:
        if event in (hook.events or []):
            session.add(
                WebhookDelivery(
                    workspace_id=run.workspace_id,
                    webhook_id=hook.id,
                    event_id=row.id,
                    next_attempt_at=utcnow(),
                )
            )
    session.flush()
    return True


def followup_url(public_url: str, run: SyncRun) -> str:
    """Census links to the sync's history page; Reflow has no UI, so this is the
    API's sync history (relative when REFLOW_PUBLIC_URL is unset)."""
    return f"{public_url}/api/v1/syncs/{run.sync_id}/sync_runs"


def apply_alerts(session: Session, *, run: SyncRun, phase: alerts.Phase, public_url: str) -> None:
    sync = session.get(Sync, run.sync_id)
    configs = alerts.lenient(sync.alert_attributes if sync else [])
    if not configs:
        return
    previous = session.scalars(
        select(SyncRun)
        .where(
            SyncRun.sync_id == run.sync_id,
            SyncRun.id < run.id,
            SyncRun.status.in_(("completed", "failed")),
        )
        .order_by(SyncRun.id.desc())
        .limit(HISTORY)
    ).all()
    open_rows = session.scalars(
        select(AlertInstance).where(
            AlertInstance.sync_id == run.sync_id,
            AlertInstance.status == "raised",
            AlertInstance.alert_type != alerts.STATUS,
        )
    ).all()
    decisions = alerts.evaluate(
        configs,
        run=alerts.RunFacts.of(run),
        previous=[alerts.RunFacts.of(r) for r in previous],
        open_ids={r.alert_id for r in open_rows},
        phase=phase,
    )
    for decision in decisions:
        if decision.action == "raise":
            _raise(session, run=run, decision=decision, public_url=public_url)
        else:
            mine = [r for r in open_rows if r.alert_id == decision.alert["id"]]
            _resolve(session, run=run, decision=decision, rows=mine, public_url=public_url)


def _raise(session: Session, *, run: SyncRun, decision: alerts.Decision, public_url: str) -> None:
    instance = AlertInstance(
        workspace_id=run.workspace_id,
        sync_id=run.sync_id,
        sync_run_id=run.id,
        alert_id=decision.alert["id"],
        alert_type=decision.alert["type"],
        message=decision.message,
        details=decision.details,
    )
    session.add(instance)
    session.flush()
    emit(
        session,
        run=run,
        event="sync.alert.raised",
        dedupe=f"alert:{instance.id}:raised",
        extra=_alert_fields(instance, decision, public_url, run),
    )


def _resolve(
    session: Session,
    *,
    run: SyncRun,
    decision: alerts.Decision,
    rows: list[AlertInstance],
    public_url: str,
) -> None:
    for row in rows:
        row.status, row.resolved_at, row.resolved_by_run_id = "resolved", utcnow(), run.id
    session.flush()
    if decision.notify and rows:
        newest = max(rows, key=lambda r: r.id)
        emit(
            session,
            run=run,
            event="sync.alert.resolved",
            dedupe=f"alert:{newest.id}:resolved",
            extra=_alert_fields(newest, decision, public_url, run),
        )


def _alert_fields(
    instance: AlertInstance, decision: alerts.Decision, public_url: str, run: SyncRun
) -> dict[str, Any]:
    return {
        "alert_instance_id": instance.id,
        "alert_type": instance.alert_type,
        "message": decision.message,
        "details": decision.details,
        "followup_url": followup_url(public_url, run),
    }
