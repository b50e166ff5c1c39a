"""Structured logs: every record emitted while a run executes carries its ``sync_id``
and ``run_id``, whichever module logs it (engine, connectors, Celery)."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

_run: contextvars.ContextVar[tuple[int | None, int | None]] = contextvars.ContextVar(
    "reflow_run", default=(None, None)
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(run_tags)s: %(message)s"


@contextmanager
def run_context(*, sync_id: int | None, run_id: int) -> Iterator[None]:
    """Tag every log record of this thread (or task) with the run it works on."""
    token = _run.set((sync_id, run_id))
    try:
        yield
    finally:
        _run.reset(token)


class RunContextFilter(logging.Filter):
    """Adds ``sync_id``/``run_id`` to records (None outside a run). Installed on
    handlers, so records of every logger pass through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        sync_id, run_id = _run.get()
        if not hasattr(record, "sync_id"):
            record.sync_id = sync_id
        if not hasattr(record, "run_id"):
            record.run_id = run_id
        tags = [f"{k}={v}" for k, v in (("sync_id", record.sync_id), ("run_id", record.run_id))
                if v is not None]
        record.run_tags = (" " + " ".join(tags)) if tags else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "sync_id": getattr(record, "sync_id", None),
            "run_id": getattr(record, "run_id", None),
        }
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Root logging for a Reflow process (serve, worker, scheduler)."""
    handler = logging.StreamHandler()
    handler.addFilter(RunContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every migration step at INFO; operators need only its warnings.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
