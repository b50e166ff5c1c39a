"""Sync schedules: the three Census wire forms, and when a sync is next due.

Census accepts (and returns) a sync's schedule in three shapes that must stay in step:

* ``mode``: ``{"type": "triggered", "triggers": {"schedule": {...}, "sync_sequence": ...,
  "dbt_cloud": ..., "fivetran": ...}}`` -- the current form;
* the legacy flat fields ``schedule_frequency``, ``schedule_day``, ``schedule_hour``,
  ``schedule_minute`` and ``cron_expression``;
* the legacy top-level ``triggers`` object (``sync_sequence``, ``dbt_cloud``, ``fivetran``).

Everything here is pure: no clock is read, callers pass ``after``/``now`` explicitly, and
every datetime is timezone-aware and computed in UTC (Census schedules are UTC, so there
is no daylight-saving arithmetic to get wrong). ``schedule_mode`` turns a request body
into the ``mode`` to store, with its errors as 400s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, get_args

import orjson
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from reflow.errors import BadRequest

Frequency = Literal[
    "never", "continuous", "quarter_hourly", "hourly", "daily", "weekly", "expression"
]
ModeType = Literal["live", "triggered"]
FREQUENCIES: tuple[str, ...] = get_args(Frequency)
MODE_TYPES: tuple[str, ...] = get_args(ModeType)
# Indexed like datetime.weekday(): Monday is 0.
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Census lists the days Sunday..Saturday; error messages follow its order.
_DAYS_CENSUS_ORDER = ", ".join((DAYS[6], *DAYS[:6]))
DEFAULT_CONTINUOUS_INTERVAL = timedelta(minutes=1)

# Fixed-period frequencies: in UTC each one is exactly periodic, which the next/previous
# slot arithmetic below relies on.
_PERIODS: dict[str, timedelta] = {
    "quarter_hourly": timedelta(minutes=15),
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
}
# A 5-field cron has no year, so one that fires once keeps firing: a single probe from a
# fixed date tells "parses but never matches" (Feb 30) apart from valid.
_CRON_PROBE = datetime(2000, 1, 1, tzinfo=UTC)

_FLAT_FIELDS: dict[str, str] = {
    "schedule_frequency": "frequency",
    "schedule_day": "day",
    "schedule_hour": "hour",
    "schedule_minute": "minute",
    "cron_expression": "cron_expression",
}

M = TypeVar("M", bound=BaseModel)


class ScheduleError(ValueError):
    """A schedule in a request body is invalid; the message names the wire field.

    ``field`` is the dotted wire path (``mode.triggers.schedule.hour``,
    ``schedule_hour``, ``triggers.sync_sequence.sync_id``) so the API can answer 400.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field


class Schedule(BaseModel):
    """``mode.triggers.schedule``. Validator messages omit the field name on purpose:
    the same model backs three wire spellings, and ScheduleError adds the right one.

    ``hour`` is 0..24 as Census documents it; 24 means midnight at the end of the day
    (for ``weekly``, midnight at the start of the following day).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    frequency: Frequency = "never"
    day: str | None = Field(default=None, validate_default=True)
    hour: int | None = None
    minute: int | None = None
    cron_expression: str | None = Field(default=None, validate_default=True)

    @field_validator("frequency", mode="before")
    @classmethod
    def _known_frequency(cls, value: Any) -> Any:
        normalized = value.strip().lower() if isinstance(value, str) else value
        if normalized not in FREQUENCIES:
            raise ValueError(f"must be one of {', '.join(FREQUENCIES)}")
        return normalized

    @field_validator("day", mode="before")
    @classmethod
    def _capitalized_day(cls, value: Any, info: ValidationInfo) -> str | None:
        if value is None or value == "":
            if info.data.get("frequency") == "weekly":
                raise ValueError("is required when frequency is weekly")
            return None
        if not isinstance(value, str) or value.strip().capitalize() not in DAYS:
            raise ValueError(f"must be one of {_DAYS_CENSUS_ORDER}")
        return value.strip().capitalize()

    @field_validator("hour", "minute", mode="before")
    @classmethod
    def _clock_position(cls, value: Any, info: ValidationInfo) -> int | None:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        # pydantic's lax int would take True and 10.0; neither is a clock position.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError("must be an integer")
        highest = 24 if info.field_name == "hour" else 59
        if value is not None and not 0 <= value <= highest:
            raise ValueError(f"must be between 0 and {highest}")
        return value

    @field_validator("cron_expression", mode="before")
    @classmethod
    def _valid_cron(cls, value: Any, info: ValidationInfo) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            if info.data.get("frequency") == "expression":
                raise ValueError("is required when frequency is expression")
            return None
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return _checked_cron(value.strip())


class SyncSequenceTrigger(BaseModel):
    """Run after sync ``sync_id`` succeeds."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    sync_id: int


class DbtCloudTrigger(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)
    project_id: str
    job_id: str


class FivetranTrigger(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)
    job_id: str
    job_name: str | None = None


class ScheduleSpec(BaseModel):
    """Everything that decides when a sync runs, independent of wire spelling."""

    model_config = ConfigDict(frozen=True)

    mode_type: ModeType = "triggered"
    schedule: Schedule = Field(default_factory=Schedule)
    sync_sequence: SyncSequenceTrigger | None = None
    dbt_cloud: DbtCloudTrigger | None = None
    fivetran: FivetranTrigger | None = None


_TRIGGER_MODELS: dict[str, type[BaseModel]] = {
    "sync_sequence": SyncSequenceTrigger,
    "dbt_cloud": DbtCloudTrigger,
    "fivetran": FivetranTrigger,
}


def _checked_cron(expression: str) -> str:
    # croniter also takes 6/7 fields (seconds, years) and @daily; Census documents
    # 5-field minute-granularity cron only, so anything else is refused up front.
    if len(expression.split()) != 5:
        raise ValueError("must have exactly 5 fields (minute hour day-of-month month day-of-week)")
    try:
        croniter(expression, _CRON_PROBE).get_next(datetime)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"is not a valid cron expression ({exc})") from None
    return expression


# --- reading request bodies -------------------------------------------------------------


def parse_schedule_input(
    body: Mapping[str, Any], current: ScheduleSpec | None = None
) -> ScheduleSpec:
    """Read a sync create/PATCH body in any of the three wire forms.

    Precedence, when several forms are present:

    1. ``mode`` (non-null) wins: it alone defines the schedule and every trigger, and the
       flat fields and top-level ``triggers`` are ignored. A nested object replaces the
       stored one wholesale, as Census documents for PATCH.
    2. Otherwise the flat fields (``schedule_*``, ``cron_expression``) have top-level PATCH
       semantics: each key present overrides that one field of ``current.schedule``
       (an explicit null clears it), absent keys keep the current value.
    3. Top-level ``triggers`` (non-null) replaces ``sync_sequence``/``dbt_cloud``/
       ``fivetran`` wholesale; a ``schedule`` inside it is ignored (the flat fields carry it).

    ``current`` is the stored spec for a PATCH; without it (create) the base is the
    default: frequency ``never``, mode type ``triggered``, no other triggers.
    Raises ScheduleError naming the offending wire field.
    """
    base = current if current is not None else ScheduleSpec()
    if body.get("mode") is not None:
        return _from_mode(body["mode"])
    triggers = _legacy_triggers(body, base)
    schedule = _merged_flat_schedule(body, base.schedule)
    return ScheduleSpec(mode_type=base.mode_type, schedule=schedule, **triggers)


def _from_mode(mode: Any) -> ScheduleSpec:
    if not isinstance(mode, Mapping):
        raise ScheduleError("mode", "must be an object")
    mode_type: ModeType = "live" if mode.get("type") == "live" else "triggered"
    if mode.get("type") not in (*MODE_TYPES, None):
        raise ScheduleError("mode.type", f"must be one of {', '.join(MODE_TYPES)}")
    triggers = _object_or_empty(mode.get("triggers"), "mode.triggers")
    raw_schedule = _object_or_empty(triggers.get("schedule"), "mode.triggers.schedule")
    names = {name: f"mode.triggers.schedule.{name}" for name in Schedule.model_fields}
    schedule = _validated(Schedule, raw_schedule, names)
    return ScheduleSpec(
        mode_type=mode_type, schedule=schedule, **_other_triggers(triggers, "mode.triggers")
    )


#: The schedule keys each frequency reads; a PATCH that changes the frequency drops
#: the others, so a weekly schedule does not keep the cron expression it replaced.
_FREQUENCY_KEYS: dict[str, tuple[str, ...]] = {
    "never": (),
    "continuous": (),
    "quarter_hourly": ("minute",),
    "hourly": ("minute",),
    "daily": ("hour", "minute"),
    "weekly": ("day", "hour", "minute"),
    "expression": ("cron_expression",),
}


def _merged_flat_schedule(body: Mapping[str, Any], current: Schedule) -> Schedule:
    given = {field: body[key] for key, field in _FLAT_FIELDS.items() if key in body}
    if not given:
        return current
    names = {field: key for key, field in _FLAT_FIELDS.items()}
    merged = {**current.model_dump(), **given}
    frequency = merged.get("frequency")
    if isinstance(frequency, str) and frequency.strip().lower() in _FREQUENCY_KEYS:
        kept = _FREQUENCY_KEYS[frequency.strip().lower()]
        merged = {k: v for k, v in merged.items() if k == "frequency" or k in kept}
    return _validated(Schedule, merged, names)


def _legacy_triggers(body: Mapping[str, Any], base: ScheduleSpec) -> dict[str, Any]:
    if body.get("triggers") is None:
        return {name: getattr(base, name) for name in _TRIGGER_MODELS}
    return _other_triggers(_object_or_empty(body["triggers"], "triggers"), "triggers")


def _other_triggers(triggers: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for name, model in _TRIGGER_MODELS.items():
        path = f"{prefix}.{name}"
        raw = _object_or_empty(triggers.get(name), path)
        names = {field: f"{path}.{field}" for field in model.model_fields}
        parsed[name] = _validated(model, raw, names) if raw else None
    return parsed


def _object_or_empty(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScheduleError(path, "must be an object")
    return value


def _validated(model: type[M], data: Mapping[str, Any], names: Mapping[str, str]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        raise ScheduleError(names.get(field, field), _problem(first)) from None


def _problem(error: Any) -> str:
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    if error["type"] == "missing":
        return "is required"
    if error["type"].startswith("int_"):
        return "must be an integer"
    if error["type"].startswith("string_"):
        return "must be a string"
    return f"is invalid: {error['msg']}"


# --- writing responses ------------------------------------------------------------------


def render_schedule_fields(spec: ScheduleSpec) -> dict[str, Any]:
    """Every schedule-related field of the sync object, all saying the same thing.

    ``mode.triggers.schedule`` omits unset keys (Census returns ``{"frequency":
    "never"}``); the flat fields are always present, null when unset; top-level
    ``triggers`` holds only the non-schedule triggers, ``{}`` when there are none.
    """
    schedule = spec.schedule
    return {
        "mode": {
            "type": spec.mode_type,
            "triggers": {
                "schedule": schedule.model_dump(exclude_none=True),
                **_rendered_triggers(spec),
            },
        },
        "schedule_frequency": schedule.frequency,
        "schedule_day": schedule.day,
        "schedule_hour": schedule.hour,
        "schedule_minute": schedule.minute,
        "cron_expression": schedule.cron_expression,
        "triggers": _rendered_triggers(spec),
    }


def _rendered_triggers(spec: ScheduleSpec) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    for name in _TRIGGER_MODELS:
        trigger: BaseModel | None = getattr(spec, name)
        if trigger is not None:
            rendered[name] = trigger.model_dump(exclude_none=True)
    return rendered


# --- computing run times ----------------------------------------------------------------


def next_run_after(
    spec: ScheduleSpec,
    after: datetime,
    *,
    continuous_interval: timedelta = DEFAULT_CONTINUOUS_INTERVAL,
) -> datetime | None:
    """The first scheduled time strictly after ``after``, in UTC; None if never.

    ``continuous`` means "again as soon as possible": ``after`` + ``continuous_interval``.
    ``quarter_hourly`` fires at :00/:15/:30/:45 shifted by ``minute`` mod 15; ``hourly`` at
    hh:``minute``; ``daily`` at ``hour``:``minute``; ``weekly`` on ``day`` at
    ``hour``:``minute``; ``expression`` per the cron. Unset hour/minute count as 0.
    hour 24 is midnight at the end of the day (weekly Monday 24:00 = Tuesday 00:00).
    Only the schedule trigger is considered: ``mode.type`` and the event triggers
    (sync_sequence, dbt_cloud, fivetran) are for the caller to act on.
    Raises ValueError for a naive ``after`` or a non-positive interval.
    """
    after = _as_utc(after, "after")
    schedule = spec.schedule
    if schedule.frequency == "never":
        return None
    if schedule.frequency == "continuous":
        return after + _positive(continuous_interval)
    if schedule.frequency == "expression":
        assert schedule.cron_expression is not None  # guaranteed by Schedule's validator
        following: datetime = croniter(schedule.cron_expression, after).get_next(datetime)
        return following.astimezone(UTC)
    return _next_fixed_slot(schedule, after)


def due_runs(
    spec: ScheduleSpec,
    last_scheduled: datetime | None,
    now: datetime,
    *,
    continuous_interval: timedelta = DEFAULT_CONTINUOUS_INTERVAL,
) -> datetime | None:
    """The scheduled time to enqueue now: the latest slot in (last_scheduled, now].

    Returning only the latest slot is deliberate: a scheduler that was down for three
    days owes a daily sync one catch-up run, not three back to back. The caller stores
    the returned time as the new ``last_scheduled``; the next call then returns None
    until the following slot passes.

    ``last_scheduled=None`` returns None: no slot is owed before a sync has a reference
    point. Pass the sync's creation (or last schedule change) time instead, so a slot
    that passed between then and ``now`` is honoured without inventing older ones.
    ``continuous`` slots are ``last_scheduled`` + k * ``continuous_interval``.
    """
    now = _as_utc(now, "now")
    if last_scheduled is None or spec.schedule.frequency == "never":
        return None
    last = _as_utc(last_scheduled, "last_scheduled")
    if spec.schedule.frequency == "continuous":
        interval = _positive(continuous_interval)
        steps = (now - last) // interval
        return last + steps * interval if steps >= 1 else None
    latest = _latest_slot_at_or_before(spec.schedule, now)
    return latest if latest > last else None


def _latest_slot_at_or_before(schedule: Schedule, moment: datetime) -> datetime:
    if schedule.frequency == "expression":
        assert schedule.cron_expression is not None
        # get_prev is strictly before its start; cron slots sit on whole minutes, so
        # starting one minute past the floored moment includes a slot exactly at it.
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        previous: datetime = croniter(schedule.cron_expression, start).get_prev(datetime)
        return previous.astimezone(UTC)
    # Exact periodicity in UTC: the slot before the next one is one period earlier.
    return _next_fixed_slot(schedule, moment) - _PERIODS[schedule.frequency]


def _next_fixed_slot(schedule: Schedule, after: datetime) -> datetime:
    period = _PERIODS[schedule.frequency]
    # The anchor is a genuine slot less than two periods past `after` (hour 24 pushes it
    # up to a day further), so one period back is never beyond the answer; walk forward.
    slot = _anchor_slot(schedule, after) - period
    while slot <= after:
        slot += period
    return slot


def _anchor_slot(schedule: Schedule, after: datetime) -> datetime:
    minute = schedule.minute or 0
    hour_start = after.replace(minute=0, second=0, microsecond=0)
    if schedule.frequency == "quarter_hourly":
        return hour_start + timedelta(minutes=minute % 15)
    if schedule.frequency == "hourly":
        return hour_start + timedelta(minutes=minute)
    # timedelta(hours=24) lands on the next midnight: that is what hour 24 means.
    day_start = hour_start.replace(hour=0) + timedelta(hours=schedule.hour or 0, minutes=minute)
    if schedule.frequency == "daily":
        return day_start
    assert schedule.day is not None  # weekly requires a day
    days_ahead = (DAYS.index(schedule.day) - after.weekday()) % 7
    return day_start + timedelta(days=days_ahead)


def _as_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (schedules are computed in UTC)")
    return moment.astimezone(UTC)


def _positive(interval: timedelta) -> timedelta:
    if interval <= timedelta(0):
        raise ValueError("continuous_interval must be positive")
    return interval


# -- a sync's schedule fields on the wire --------------------------------------------

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
