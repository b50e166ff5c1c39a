"""Schedule fields of a sync: the ``mode`` object and the legacy flat fields."""

from __future__ import annotations

from typing import Any

from reflow.errors import BadRequest

SCHEDULE_KEYS = (
    "mode",
    "schedule_frequency",
    "schedule_day",
    "schedule_hour",
    "schedule_minute",
    "cron_expression",
    "triggers",
)
DEFAULT_MODE: dict[str, Any] = {
    "type": "triggered",
    "triggers": {"schedule": {"frequency": "never"}},
}


def schedule_mode(body: dict[str, Any], *, current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``mode`` to store for a create/PATCH body, or None to keep ``current``."""
    if not any(k in body for k in SCHEDULE_KEYS):
        return None if current else dict(DEFAULT_MODE)
    from reflow.jobs.schedule import parse_schedule_input, render_schedule_fields

    try:
        stored = parse_schedule_input({"mode": current}) if current else None
        spec = parse_schedule_input(body, current=stored)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    return render_schedule_fields(spec)["mode"]


def schedule_fields(mode: dict[str, Any] | None) -> dict[str, Any]:
    """Every wire field (``mode`` and the legacy flat ones) from the stored mode."""
    from reflow.jobs.schedule import parse_schedule_input, render_schedule_fields

    return render_schedule_fields(parse_schedule_input({"mode": mode or DEFAULT_MODE}))
