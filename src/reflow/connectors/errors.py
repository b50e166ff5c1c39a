"""Typed connector failures. The type decides the engine's retry policy."""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every failure a connector raises on purpose."""


class TerminalError(ConnectorError):
    """Retrying cannot help: bad credentials, a missing object, a permission denied.

    The run fails with this message.
    """


class TransientError(ConnectorError):
    """Retrying later may help: timeouts, 429, 5xx, a broker that did not confirm.

    ``retry_after`` (seconds) is the destination's own hint, when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatchRejected(ConnectorError):
    """The destination refused a whole batch because of its data (a value too long,
    a type it cannot cast), without saying which record.

    The engine splits the batch until the failing records are isolated, then
    records each of them as rejected with this message.
    """


class ObjectNotFound(TerminalError):
    """The named table/object does not exist (or the credentials cannot see it)."""


class InvalidQuery(TerminalError):
    """A model's SQL failed in the source; the message is the database's own."""
