"""The console's Jinja2 environment: autoescape on for every template, a few filters."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

#: Run status -> (css class, word, icon); colour is never the only signal.
STATUSES = {
    "completed": ("ok", "Completed", "✓"),
    "working": ("busy", "Running", "↻"),
    "queued": ("busy", "Queued", "…"),
    "failed": ("bad", "Failed", "✕"),
    "skipped": ("muted", "Skipped", "–"),
    "Up to Date": ("ok", "Healthy", "✓"),
    "Failing": ("bad", "Failing", "✕"),
    "partial": ("warn", "Some records failed", "!"),
    "Ready": ("muted", "Never run", "○"),
    "paused": ("muted", "Paused", "❚❚"),
    "rejected": ("bad", "Rejected", "✕"),
    "invalid": ("warn", "Invalid", "!"),
    "NULL": ("warn", "Null key", "!"),
    "DUPLICATE": ("warn", "Duplicate key", "!"),
    "succeeded": ("ok", "Succeeded", "✓"),
    "success": ("ok", "Passed", "✓"),
    "warning": ("warn", "Warning", "!"),
}


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return _aware(value).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = int(((now or dt.datetime.now(dt.UTC)) - _aware(value)).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            text = f"{seconds // size} {unit}"
            break
    else:
        text = f"{seconds} s"
    return f"in {text}" if future else f"{text} ago"


def duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None:
        return "—"
    seconds = ((_aware(end) if end else dt.datetime.now(dt.UTC)) - _aware(start)).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def number(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,}"


def status(value: str | None) -> tuple[str, str, str]:
    return STATUSES.get(value or "", ("muted", value or "—", "·"))


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reflow.console", "templates"),
        autoescape=True,  # every template, whatever its file name
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, ago=ago, number=number)
    env.globals.update(status=status, duration=duration)
    return env


#: Scripts only from this server (htmx), no inline script or style: a value that slipped
#: past escaping still could not run. Forms post only here; no framing (clickjacking).
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


#: Connect pages post, then redirect to the partner's redirect_uri: no form-action limit.
CONNECT_HEADERS = {"Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"]
                   .replace("form-action 'self'; ", "")}


def render(template: str, *, status: int = 200, headers: dict[str, str] | None = None,
           **values: Any) -> HTMLResponse:
    html = environment().get_template(template).render(**values)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
