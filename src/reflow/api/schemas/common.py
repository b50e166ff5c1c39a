"""Shared pieces: the signed 64-bit id type, the Census envelopes, pagination."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field

#: Every integer path/query parameter: ids are 64-bit in the state database, so a
#: larger number is a 400 naming the parameter, not an OverflowError 500 there.
Int64 = Annotated[int, at.Ge(-(2**63)), at.Le(2**63 - 1)]

T = TypeVar("T")


class Open(BaseModel):
    """A model that tolerates fields it does not name (Census clients send extras,
    and responses may grow fields without breaking a strict client's schema)."""

    model_config = ConfigDict(extra="allow")


class ErrorEnvelope(BaseModel):
    """``{"status": "error", "message": "<field>: ..."}``; ``status`` is a string for
    400s and ``not_found``, an integer for 401/403 (as Census answers)."""

    status: str | int
    message: str


class Envelope(Open, Generic[T]):
    status: str = Field(examples=["success"])
    data: T


class Pagination(Open):
    total_records: int | None = None
    per_page: int | None = None
    prev_page: int | None = None
    page: int | None = None
    next_page: int | None = None
    last_page: int | None = None


class ListEnvelope(Open, Generic[T]):
    status: str = Field(examples=["success"])
    data: list[T]
    pagination: Pagination | None = None
    next: str | None = None


class StatusOnly(Open):
    """``{"status": "deleted"}`` and other bodies without ``data``."""

    status: str
    message: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": text}
    for code, text in (
        (400, "Bad input: the message names the field."),
        (401, "Missing or unknown API token."),
        (403, "The token's role does not allow this."),
        (404, "No such resource in this workspace."),
        (405, "Not available for this kind of resource (e.g. topics of a non-HTTP source)."),
        (409, "Conflicts with the current state."),
        (413, "Request body larger than the configured limit."),
    )
}
