"""Objects a config-as-code project manages (migration 0930_managed_objects).

One row per workspace object that ``reflow apply`` created or adopted: its stable slug
(how the project names it instead of a database id) and who manages it. Kept beside
the resources rather than as columns on them so the Census tables stay untouched.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from reflow.db.tables import Base, Timestamped


class ManagedObject(Timestamped, Base):
    __tablename__ = "managed_objects"
    __table_args__ = (
        UniqueConstraint("workspace_id", "kind", "object_id"),
        UniqueConstraint("workspace_id", "kind", "slug"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    #: "source" | "destination" | "model" | "sync"
    kind: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[int] = mapped_column()
    #: The object's own created_at: a row whose object was deleted through the API
    #: never marks a later object that reuses the id (SQLite reuses the highest id).
    object_created_at: Mapped[dt.datetime] = mapped_column()
    slug: Mapped[str] = mapped_column(String(200))
    managed_by: Mapped[str] = mapped_column(String(100))
