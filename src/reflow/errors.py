"""One error root carrying an HTTP status and the Census error envelope."""

from __future__ import annotations

from typing import Any


class ReflowError(Exception):
    status_code = 400
    #: The envelope's ``status``: Census uses strings for 400s and integers elsewhere.
    envelope_status: str | int = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def envelope(self) -> dict[str, Any]:
        return {"status": self.envelope_status, "message": self.message}


class BadRequest(ReflowError):
    pass


class Unauthorized(ReflowError):
    status_code = 401
    envelope_status = 401


class Forbidden(ReflowError):
    status_code = 403
    envelope_status = 403


class NotFound(ReflowError):
    status_code = 404
    envelope_status = "not_found"


class Conflict(ReflowError):
    status_code = 409


class Gone(ReflowError):
    status_code = 410
