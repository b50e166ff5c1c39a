"""Log records are redacted wherever their secret sits: the message, its arguments
(httpx passes its URL object), uvicorn's access-log tuple, and a traceback."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest

from reflow.jobs.logcontext import TEXT_FORMAT, JsonFormatter, configure_logging, redact

SECRET = "sk_live_0123456789"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO")
    buffer = io.StringIO()
    root.handlers[0].stream = buffer  # type: ignore[attr-defined]
    yield buffer
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


@pytest.mark.parametrize(("text", "expected"), [
    (f"https://api.example.com/v1?api_key={SECRET}&x=1", "https://api.example.com/v1?api_key=***&x=***"),
    (f"postgresql://reflow:{SECRET}@db:5432/x", "postgresql://***@db:5432/x"),
    (f'"GET /api/v1/embedded/sync_wizard?auth={SECRET} HTTP/1.1" 200',
     '"GET /api/v1/embedded/sync_wizard?auth=*** HTTP/1.1" 200'),
    (f"/api/v1/sync_runs/4/records_export/{SECRET}/records.parquet?expires=1&signature=ab",
     "/api/v1/sync_runs/4/records_export/***/records.parquet?expires=***&signature=***"),
    ("run 12 done: 40 records", "run 12 done: 40 records"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_every_place_a_secret_can_sit_is_redacted(captured: io.StringIO) -> None:
    url = httpx.URL(f"https://h.example/rpc?token={SECRET}")
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST", url,
                                    "HTTP/1.1", 200, "OK")
    logging.getLogger("reflow.engine").warning(f"sending to {url} failed")
    try:
        raise RuntimeError(f"POST https://u:{SECRET}@h.example/x failed")
    except RuntimeError:
        logging.getLogger("reflow.jobs").exception("run failed")
    access = logging.getLogger("uvicorn.access")
    handler = logging.StreamHandler(captured)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace("%(run_tags)s", "")))
    access.addHandler(handler)
    try:
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                    f"/api/v1/embedded/sync_wizard?auth={SECRET}", "1.1", 200)
    finally:
        access.removeHandler(handler)
    log = captured.getvalue()
    assert SECRET not in log
    assert log.count("***") >= 4 and "RuntimeError" in log


def test_json_lines_carry_the_redacted_traceback() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, None)
    try:
        raise ValueError(f"https://h/?key={SECRET}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    from reflow.jobs.logcontext import RedactingFilter, RunContextFilter

    RunContextFilter().filter(record)
    RedactingFilter().filter(record)
    assert SECRET not in JsonFormatter().format(record)
