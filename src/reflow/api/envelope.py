"""The Census response envelope and pagination parameters."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Query, Request
from fastapi.responses import JSONResponse

from reflow.api.schemas.common import Int64
from reflow.db.repo import Page, PageParams
from reflow.timestamps import iso

__all__ = ["FastJSONResponse", "bare", "iso", "listing", "ok", "page_params"]


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` rendered by orjson (C): the same compact UTF-8 bytes, keys in
    the same order, for a fraction of the time a page of syncs took ``json.dumps``. What
    orjson refuses (an integer beyond 64 bits...) is rendered by ``JSONResponse``."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # orjson.JSONEncodeError is one
            return super().render(content)


def ok(data: Any, status: str = "success", code: int = 200, **extra: Any) -> JSONResponse:
    return FastJSONResponse({"status": status, "data": data, **extra}, status_code=code)


def bare(body: dict[str, Any], code: int = 200) -> JSONResponse:
    return FastJSONResponse(body, status_code=code)


MAX_PAGE = 2**40


async def page_params(  # async: no worker-thread hop for arithmetic (see api/deps.py)
    page: Annotated[Int64, Query(description="Page number, from 1; 0 is treated as 1.")] = 1,
    per_page: Annotated[Int64, Query(description="Records per page; at most 100.")] = 25,
    order: str = Query("desc", description="Order by creation: asc or desc."),
) -> PageParams:
    return PageParams(
        # Capped so the row offset stays a 64-bit number; such a page is empty anyway.
        page=min(max(page, 1), MAX_PAGE),
        per_page=min(max(per_page, 1), 100),
        order="asc" if order == "asc" else "desc",
    )


def listing(request: Request, page: Page, data: list[Any], **extra: Any) -> JSONResponse:
    pagination = page.pagination()
    next_url = None
    if pagination["next_page"] is not None:
        next_url = str(
            request.url.include_query_params(
                page=pagination["next_page"], per_page=page.params.per_page
            )
        )
    return FastJSONResponse(
        {"status": "success", "data": data, "pagination": pagination, "next": next_url, **extra}
    )
