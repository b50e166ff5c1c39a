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


class PayloadTooLarge(ReflowError):
    status_code = 413


#: Run error codes as Census-style constants (Census shows e.g. ``JSON_ARRAY_ERROR``).
#: A run failed by a connector used to store the error's Python class name.
_RUN_ERROR_CODES = {
    "ConnectorError": "CONNECTOR_ERROR",
    "TerminalError": "CONNECTOR_ERROR",
    "RpcError": "CONNECTOR_ERROR",
    "TransientError": "CONNECTOR_UNAVAILABLE",
    "BatchRejected": "RECORDS_REJECTED",
    "ObjectNotFound": "OBJECT_NOT_FOUND",
    "InvalidQuery": "INVALID_QUERY",
}


def run_error_code(stored: str | None) -> str | None:
    """The stable code an API client sees for a run's stored ``error_code``."""
    if stored is None or stored.isupper() or not stored:
        return stored
    return _RUN_ERROR_CODES.get(stored, "CONNECTOR_ERROR")
