"""Structured logs: every record emitted while a run executes carries its ``sync_id``
and ``run_id``, whichever module logs it (engine, connectors, Celery).

No secret reaches a log line: ``RedactingFilter`` rewrites every record (root handler,
and the httpx and uvicorn loggers, whose access log has its own handler) so URLs show
neither userinfo nor query values (API keys ride there: custom API and HTTP Request
URLs, link tokens in ``?auth=``) and export download tokens are hidden in paths."""

from __future__ import annotations

import contextvars
import json
import logging
import re
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
        tags = [f"{k}={v}" for k in ("sync_id", "run_id")
                if (v := getattr(record, k)) is not None]
        record.run_tags = (" " + " ".join(tags)) if tags else ""
        return True


REDACTED = "***"
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@\"'<>]+@")
_QUERY_VALUE = re.compile(r"(?P<key>[?&][^=&#\s\"'<>?]+=)[^&#\s\"'<>]+")
#: Path segments that are credentials: the records-export download token.
_PATH_TOKEN = re.compile(r"(?P<prefix>/records_export/)[^/\s?\"']+")
#: Loggers that write URLs and bypass the root handler (uvicorn's access log).
REDACTED_LOGGERS = ("httpx", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    """``text`` with URL userinfo, every query value and export tokens replaced."""
    text = _USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    text = _QUERY_VALUE.sub(lambda m: m.group("key") + REDACTED, text)
    return _PATH_TOKEN.sub(lambda m: m.group("prefix") + REDACTED, text)


class RedactingFilter(logging.Filter):
    """Redacts the record's message and each of its string arguments in place (uvicorn's
    access formatter unpacks the arguments, so they keep their shape)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else _redact_other(a)
                                for a in args)
        elif isinstance(args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else _redact_other(v)
                           for k, v in args.items()}
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text: a traceback's messages are redacted too.
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()


def _redact_other(value: object) -> object:
    # httpx passes its URL object; anything whose text is a URL is logged as text.
    text = str(value) if type(value).__name__ == "URL" else None
    return value if text is None else redact(text)


def install_redaction(handler: logging.Handler | None = None) -> None:
    """Put the redacting filter on ``handler`` and on the loggers that write URLs."""
    redacting = RedactingFilter()
    if handler is not None:
        handler.addFilter(redacting)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(redacting)


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
            data["exc_info"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Root logging for a Reflow process (serve, worker, scheduler)."""
    handler = logging.StreamHandler()
    handler.addFilter(RunContextFilter())
    install_redaction(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every migration step at INFO; operators need only its warnings.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
