"""Queries shared by the services. Every read of a workspace resource goes through
``get_scoped`` so an id from another workspace is indistinguishable from a missing one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, func
from sqlalchemy.orm import Session

from reflow.errors import NotFound

T = TypeVar("T")


@dataclass(frozen=True)
class PageParams:
    page: int = 1
    per_page: int = 25
    order: str = "desc"


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int
    params: PageParams

    @property
    def last_page(self) -> int:
        return max(1, math.ceil(self.total / self.params.per_page))

    def pagination(self) -> dict[str, int | None]:
        page, last = self.params.page, self.last_page
        return {
            "total_records": self.total,
            "per_page": self.params.per_page,
            "prev_page": page - 1 if page > 1 else None,
            "page": page,
            "next_page": page + 1 if page < last else None,
            "last_page": last,
        }


def get_scoped(session: Session, table: type[T], id_: int, workspace_id: int, what: str) -> T:
    row = session.get(table, id_)
    if row is None or getattr(row, "workspace_id", None) != workspace_id:
        raise NotFound(f"{what} {id_} not found")
    return row


def paginate(session: Session, stmt: Select[Any], params: PageParams, id_column: Any) -> Page:
    """One page of ``stmt``'s rows and their total. A page that is not full, past an
    offset the rows show to exist, is the last one: its total needs no count."""
    order = id_column.asc() if params.order == "asc" else id_column.desc()
    offset = (params.page - 1) * params.per_page
    rows = list(session.scalars(stmt.order_by(order).offset(offset).limit(params.per_page)))
    if len(rows) < params.per_page and (rows or offset == 0):
        return Page(rows, offset + len(rows), params)
    counted = stmt.with_only_columns(func.count(), maintain_column_froms=True).order_by(None)
    return Page(rows, session.scalar(counted) or 0, params)
