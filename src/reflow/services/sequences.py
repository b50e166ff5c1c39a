"""Sync sequences: ``mode.triggers.sync_sequence.sync_id`` = "run after that sync
succeeds". Called from ``jobs.progress.finish`` inside the transaction that marks the
run completed, so the completion and the runs it sets off commit together; the new runs
are handed to the executor after that commit (a lost hand-off is re-sent by the
scheduler's requeue sweep)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflow.db.engine import after_commit
from reflow.db.tables import Sync, SyncRun
from reflow.errors import BadRequest
from reflow.runtime import Runtime
from reflow.services import runs

log = logging.getLogger(__name__)


def followers(session: Session, *, sync: Sync) -> list[Sync]:
    """Unpaused syncs of the same workspace whose sequence trigger names ``sync``."""
    candidates = session.scalars(
        select(Sync)
        .where(Sync.workspace_id == sync.workspace_id, Sync.paused.is_(False), Sync.id != sync.id)
        .order_by(Sync.id)
    )
    return [s for s in candidates if sequence_parent(s.mode) == sync.id]


def sequence_parent(mode: dict[str, Any] | None) -> int | None:
    triggers = (mode or {}).get("triggers") or {}
    sequence = triggers.get("sync_sequence") if isinstance(triggers, dict) else None
    parent = sequence.get("sync_id") if isinstance(sequence, dict) else None
    try:
        return int(parent) if parent is not None else None
    except (TypeError, ValueError):
        return None


def trigger_followers(runtime: Runtime, session: Session, *, run_id: int) -> list[int]:
    """Trigger every follower of the sync whose run ``run_id`` just completed."""
    run = session.get(SyncRun, run_id)
    sync = session.get(Sync, run.sync_id) if run is not None else None
    if sync is None:
        return []
    started: list[int] = []
    for follower in followers(session, sync=sync):
        reason = {
            "ui_tag": "Sync Sequence",
            "ui_detail": f"Triggered after sync {sync.id} completed (run {run_id})",
        }
        new = runs.trigger(session, sync=follower, reason=reason)
        if new.status == "queued":
            started.append(new.id)
            after_commit(session, _enqueuer(runtime, new.id))
    return started


def _enqueuer(runtime: Runtime, run_id: int) -> Any:
    def enqueue() -> None:
        try:
            runtime.enqueue(run_id)
        except Exception:  # the run is queued in the database; the scheduler re-sends it
            log.warning("run %s: hand-off to the executor failed", run_id, exc_info=True)

    return enqueue


def check_no_cycle(session: Session, *, sync: Sync, mode: dict[str, Any], where: str) -> None:
    """A sync sequence must not lead back to the sync itself: one trigger would set off
    runs without end (1 -> 2 -> 1, or a sync after itself). ``where`` names the field."""
    parent = sequence_parent(mode)
    seen: set[int] = set()
    while parent is not None and parent not in seen:
        if sync.id is not None and parent == sync.id:
            raise BadRequest(f"{where}: sync {sync.id} would run after itself"
                             " (the sequence is a cycle)")
        seen.add(parent)
        ahead = session.get(Sync, parent)
        if ahead is None or ahead.workspace_id != sync.workspace_id:
            return
        parent = sequence_parent(ahead.mode)
