"""Schedule fields of a sync: the ``mode`` object and the legacy flat fields."""

from __future__ import annotations

from typing import Any

import orjson

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


#: Stored mode -> its wire fields, both as JSON: a page of syncs shares a few modes, and
#: parsing one (pydantic models) cost more than the rest of the sync's rendering.
_RENDERED: dict[bytes, bytes] = {}


def schedule_fields(mode: dict[str, Any] | None) -> dict[str, Any]:
    """Every wire field (``mode`` and the legacy flat ones) from the stored mode; each
    call gets objects of its own."""
    from reflow.jobs.schedule import parse_schedule_input, render_schedule_fields

    mode = mode or DEFAULT_MODE
    try:
        key = orjson.dumps(mode, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        rendered = _RENDERED.get(key)
        if rendered is None:
            rendered = orjson.dumps(render_schedule_fields(parse_schedule_input({"mode": mode})))
            if len(_RENDERED) < 1024:
                _RENDERED[key] = rendered
    except TypeError:  # orjson refuses integers beyond 64 bits: not remembered
        return render_schedule_fields(parse_schedule_input({"mode": mode}))
    return orjson.loads(rendered)  # type: ignore[no-any-return]
