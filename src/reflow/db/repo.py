"""Queries shared by the services. Every read of a workspace resource goes through
``get_scoped`` so an id from another workspace is indistinguishable from a missing one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func
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
    """One page of ``stmt``'s rows and their total."""
    return Paged(stmt, id_column).page(session, params)


class Paged:
    """A list's statements, built once: the page in either order (offset and limit bound
    at execution) and the count. A list that is polled builds one at import, with its
    filters as bound parameters, and passes their values to ``page``: building the
    statements (and their cache keys) cost as much as running them."""

    def __init__(self, stmt: Select[Any], id_column: Any) -> None:
        self.stmt, self.id_column = stmt, id_column
        self._built: dict[str, Select[Any]] = {}  # each built when first needed

    def page(self, session: Session, params: PageParams, **values: Any) -> Page:
        """A page that is not full, past an offset its rows show to exist, is the last
        one: its total needs no count."""
        offset = (params.page - 1) * params.per_page
        rows = list(session.scalars(self._statement(params.order), {
            **values, "page_offset": offset, "page_limit": params.per_page}))
        if len(rows) < params.per_page and (rows or offset == 0):
            return Page(rows, offset + len(rows), params)
        return Page(rows, session.scalar(self._statement("count"), values) or 0, params)

    def _statement(self, kind: str) -> Select[Any]:
        built = self._built.get(kind)
        if built is None:
            if kind == "count":
                built = self.stmt.with_only_columns(
                    func.count(), maintain_column_froms=True).order_by(None)
            else:
                column = self.id_column.asc() if kind == "asc" else self.id_column.desc()
                built = self.stmt.order_by(column).offset(bindparam("page_offset")).limit(
                    bindparam("page_limit"))
            self._built[kind] = built
        return built
