"""ORM tables of the jobs area: where the scheduler keeps its place per sync."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from reflow.db.tables import Base, SyncRun, utcnow


class SyncScheduleState(Base):
    """The last schedule slot the scheduler claimed for a sync.

    ``version`` makes claiming a slot a conditional update: two schedulers that read the
    same state race on ``WHERE version = :seen`` and exactly one of them wins.
    ``fingerprint`` is the schedule (and paused flag) the slot was computed from; when it
    changes, the reference point moves to the change, so no slot is owed from before it.
    """

    __tablename__ = "sync_schedule_states"
    sync_id: Mapped[int] = mapped_column(
        ForeignKey("syncs.id", ondelete="CASCADE"), primary_key=True
    )
    last_scheduled_at: Mapped[dt.datetime] = mapped_column()
    fingerprint: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# A second guard behind the conditional update: one run per (sync, scheduled slot).
# NULLs (API and sequence triggers) never collide.
Index(
    "uq_sync_runs_sync_scheduled",
    SyncRun.sync_id,
    SyncRun.scheduled_execution_time,
    unique=True,
)

__all__ = ["SyncScheduleState"]
