"""Schedule parsing, wire rendering and run-time arithmetic (pure code, fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from reflow.services.schedules import (
    Schedule,
    ScheduleError,
    ScheduleSpec,
    SyncSequenceTrigger,
    due_runs,
    next_run_after,
    parse_schedule_input,
    render_schedule_fields,
)


def at(text: str) -> datetime:
    """A UTC instant from 'YYYY-MM-DD HH:MM[:SS[.ffffff]]'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def spec(**schedule: Any) -> ScheduleSpec:
    return parse_schedule_input({"mode": {"type": "triggered", "triggers": {"schedule": schedule}}})


class FakeClock:
    """The scheduler's notion of now, advanced by the test instead of by time passing."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["monday", "MONDAY", " Monday ", "mOnDaY"])
def test_day_accepts_any_case_and_stores_it_capitalized(given: str) -> None:
    assert spec(frequency="weekly", day=given).schedule.day == "Monday"


def test_frequency_is_case_insensitive() -> None:
    assert spec(frequency="Daily", hour=1).schedule.frequency == "daily"


MODE = "mode.triggers.schedule"
INVALID_BODIES: list[tuple[dict[str, Any], str, str]] = [
    ({"hour": 25, "frequency": "daily"}, f"{MODE}.hour", "must be between 0 and 24"),
    ({"hour": -1, "frequency": "daily"}, f"{MODE}.hour", "must be between 0 and 24"),
    ({"minute": 60, "frequency": "hourly"}, f"{MODE}.minute", "must be between 0 and 59"),
    ({"minute": "ten", "frequency": "hourly"}, f"{MODE}.minute", "must be an integer"),
    ({"hour": True, "frequency": "daily"}, f"{MODE}.hour", "must be an integer"),
    ({"hour": 10.5, "frequency": "daily"}, f"{MODE}.hour", "must be an integer"),
    (
        {"frequency": "monthly"},
        f"{MODE}.frequency",
        "must be one of never, continuous, quarter_hourly, hourly, daily, weekly, expression",
    ),
    (
        {"frequency": "weekly", "day": "Funday"},
        f"{MODE}.day",
        "must be one of Sunday, Monday, Tuesday, Wednesday, Thursday, Friday, Saturday",
    ),
    ({"frequency": "weekly", "hour": 3}, f"{MODE}.day", "is required when frequency is weekly"),
    (
        {"frequency": "expression"},
        f"{MODE}.cron_expression",
        "is required when frequency is expression",
    ),
    (
        {"frequency": "expression", "cron_expression": 5},
        f"{MODE}.cron_expression",
        "must be a string",
    ),
]
CRON_5_FIELDS = "must have exactly 5 fields (minute hour day-of-month month day-of-week)"
BAD_CRONS: list[tuple[str, str]] = [
    ("0 * * * * *", CRON_5_FIELDS),  # croniter would read a sixth (seconds) field
    ("0 0 1 1 * 2030", CRON_5_FIELDS),  # ... or a year
    ("@daily", CRON_5_FIELDS),
    ("* * * *", CRON_5_FIELDS),
    ("a b c d e", "is not a valid cron expression"),
    ("61 * * * *", "is not a valid cron expression"),
    ("*/0 * * * *", "is not a valid cron expression"),
    ("0 0 30 2 *", "is not a valid cron expression"),  # parses, but Feb 30 never comes
]


@pytest.mark.parametrize(("schedule", "field", "problem"), INVALID_BODIES)
def test_invalid_mode_schedule_names_the_mode_field(
    schedule: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        spec(**schedule)
    assert caught.value.field == field
    assert str(caught.value) == f"{field} {problem}"


@pytest.mark.parametrize(("schedule", "field", "problem"), INVALID_BODIES)
def test_invalid_flat_fields_name_the_flat_field(
    schedule: dict[str, Any], field: str, problem: str
) -> None:
    body = {_flat_name(key): value for key, value in schedule.items()}
    with pytest.raises(ScheduleError) as caught:
        parse_schedule_input(body)
    assert str(caught.value) == f"{_flat_name(field.rsplit('.', 1)[1])} {problem}"


def _flat_name(schedule_key: str) -> str:
    return schedule_key if schedule_key == "cron_expression" else f"schedule_{schedule_key}"


@pytest.mark.parametrize(("cron", "problem"), BAD_CRONS)
def test_bad_cron_expressions_are_refused_naming_cron_expression(cron: str, problem: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        spec(frequency="expression", cron_expression=cron)
    assert caught.value.field == f"{MODE}.cron_expression"
    assert str(caught.value).startswith(f"{MODE}.cron_expression {problem}")
    with pytest.raises(ScheduleError, match=r"^cron_expression "):
        parse_schedule_input({"schedule_frequency": "expression", "cron_expression": cron})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mode": "daily"}, "mode must be an object"),
        ({"mode": {"type": "streaming"}}, "mode.type must be one of live, triggered"),
        ({"mode": {"triggers": []}}, "mode.triggers must be an object"),
        ({"mode": {"triggers": {"schedule": "daily"}}}, "mode.triggers.schedule must be an object"),
        (
            {"mode": {"triggers": {"sync_sequence": {"id": 3}}}},
            "mode.triggers.sync_sequence.sync_id is required",
        ),
        (
            {"triggers": {"sync_sequence": {"sync_id": "abc"}}},
            "triggers.sync_sequence.sync_id must be an integer",
        ),
        ({"triggers": {"dbt_cloud": {"project_id": "1"}}}, "triggers.dbt_cloud.job_id is required"),
        ({"triggers": "x"}, "triggers must be an object"),
    ],
)
def test_invalid_mode_and_triggers_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule_input(body)
    assert str(caught.value) == message


def test_schedule_model_rejects_out_of_range_values_on_its_own() -> None:
    with pytest.raises(ValidationError) as caught:
        Schedule(frequency="daily", hour=25)
    assert caught.value.errors()[0]["loc"] == ("hour",)
    assert Schedule(frequency="daily", hour=24, minute=59).hour == 24


# --- wire forms -------------------------------------------------------------------------


def test_default_is_never_and_triggered_in_every_wire_field() -> None:
    assert parse_schedule_input({}) == ScheduleSpec()
    assert render_schedule_fields(parse_schedule_input({"paused": True})) == {
        "mode": {"type": "triggered", "triggers": {"schedule": {"frequency": "never"}}},
        "schedule_frequency": "never",
        "schedule_day": None,
        "schedule_hour": None,
        "schedule_minute": None,
        "cron_expression": None,
        "triggers": {},
    }


def test_census_demo_flat_body_renders_as_mode_too() -> None:
    body = {"schedule_frequency": "daily", "schedule_hour": 0, "schedule_minute": 0}
    rendered = render_schedule_fields(parse_schedule_input(body))
    assert rendered["mode"] == {
        "type": "triggered",
        "triggers": {"schedule": {"frequency": "daily", "hour": 0, "minute": 0}},
    }
    assert rendered["schedule_hour"] == 0 and rendered["schedule_minute"] == 0


def test_documented_mode_example_is_echoed_unchanged() -> None:
    mode: dict[str, Any] = {
        "type": "triggered",
        "triggers": {
            "schedule": {"frequency": "weekly", "day": "Monday", "hour": 10, "minute": 30},
            "dbt_cloud": {"project_id": "12345", "job_id": "123456"},
            "fivetran": {"job_id": "test_job_id", "job_name": "test_job_name"},
            "sync_sequence": {"sync_id": 123},
        },
    }
    rendered = render_schedule_fields(parse_schedule_input({"mode": mode}))
    assert rendered["mode"] == mode
    assert rendered["triggers"] == {k: v for k, v in mode["triggers"].items() if k != "schedule"}
    assert (rendered["schedule_frequency"], rendered["schedule_day"]) == ("weekly", "Monday")


ROUND_TRIP_SPECS = [
    ScheduleSpec(),
    spec(frequency="continuous"),
    spec(frequency="quarter_hourly", minute=5),
    spec(frequency="hourly", minute=30),
    spec(frequency="daily", hour=24, minute=0),
    spec(frequency="weekly", day="saturday", hour=23, minute=59),
    spec(frequency="expression", cron_expression="*/5 9-17 * * 1-5"),
    parse_schedule_input(
        {
            "schedule_frequency": "daily",
            "schedule_hour": 4,
            "triggers": {
                "sync_sequence": {"sync_id": 7},
                "dbt_cloud": {"project_id": 1, "job_id": 2},
                "fivetran": {"job_id": "j"},
            },
        }
    ),
]


@pytest.mark.parametrize("original", ROUND_TRIP_SPECS)
def test_each_wire_form_alone_round_trips(original: ScheduleSpec) -> None:
    rendered = render_schedule_fields(original)
    flat_keys = ("schedule_frequency", "schedule_day", "schedule_hour", "schedule_minute")
    flat_only = {key: rendered[key] for key in (*flat_keys, "cron_expression", "triggers")}
    assert parse_schedule_input(rendered) == original
    assert parse_schedule_input({"mode": rendered["mode"]}) == original
    assert parse_schedule_input(flat_only) == original


def test_live_mode_survives_a_mode_round_trip() -> None:
    live = parse_schedule_input({"mode": {"type": "live"}})
    assert live.mode_type == "live"
    assert parse_schedule_input(render_schedule_fields(live)) == live


def test_mode_wins_over_flat_fields_and_legacy_triggers() -> None:
    body = {
        "mode": {"type": "triggered", "triggers": {"schedule": {"frequency": "hourly"}}},
        "schedule_frequency": "daily",
        "schedule_hour": 99,  # ignored, so not even validated
        "triggers": {"sync_sequence": {"sync_id": 1}},
    }
    parsed = parse_schedule_input(body)
    assert parsed.schedule == Schedule(frequency="hourly")
    assert parsed.sync_sequence is None


STORED = parse_schedule_input(
    {
        "mode": {
            "type": "live",
            "triggers": {
                "schedule": {"frequency": "daily", "hour": 10, "minute": 30},
                "sync_sequence": {"sync_id": 9},
            },
        }
    }
)


def test_patch_flat_field_changes_only_that_field() -> None:
    patched = parse_schedule_input({"schedule_hour": 5}, current=STORED)
    assert patched.schedule == Schedule(frequency="daily", hour=5, minute=30)
    assert (patched.mode_type, patched.sync_sequence) == ("live", SyncSequenceTrigger(sync_id=9))


def test_patch_without_schedule_keys_keeps_everything() -> None:
    assert parse_schedule_input({"paused": True}, current=STORED) == STORED


def test_patch_flat_null_clears_the_field() -> None:
    patched = parse_schedule_input({"schedule_minute": None}, current=STORED)
    assert patched.schedule.minute is None


def test_patch_triggers_replaces_them_wholesale_and_keeps_the_schedule() -> None:
    patched = parse_schedule_input({"triggers": {"fivetran": {"job_id": "f"}}}, current=STORED)
    assert patched.sync_sequence is None and patched.fivetran is not None
    assert patched.schedule == STORED.schedule


def test_patch_mode_replaces_the_stored_spec_wholesale() -> None:
    patched = parse_schedule_input({"mode": {"triggers": {}}}, current=STORED)
    assert patched == ScheduleSpec()


def test_patch_to_weekly_without_a_day_is_refused_naming_schedule_day() -> None:
    with pytest.raises(ScheduleError, match=r"^schedule_day is required when frequency is weekly$"):
        parse_schedule_input({"schedule_frequency": "weekly"}, current=STORED)


# --- next_run_after ---------------------------------------------------------------------


def weekly(day: str, hour: int, minute: int) -> dict[str, Any]:
    return {"frequency": "weekly", "day": day, "hour": hour, "minute": minute}


def cron(expression: str) -> dict[str, Any]:
    return {"frequency": "expression", "cron_expression": expression}


NEXT_RUN_CASES: list[tuple[dict[str, Any], str, str]] = [
    # quarter_hourly: boundaries are strictly after, offset is minute mod 15
    ({"frequency": "quarter_hourly"}, "2028-03-01 10:07", "2028-03-01 10:15"),
    ({"frequency": "quarter_hourly"}, "2028-03-01 10:15", "2028-03-01 10:30"),
    ({"frequency": "quarter_hourly"}, "2028-03-01 10:14:59.999999", "2028-03-01 10:15"),
    ({"frequency": "quarter_hourly"}, "2028-03-01 10:45", "2028-03-01 11:00"),
    ({"frequency": "quarter_hourly", "minute": 5}, "2028-03-01 10:07", "2028-03-01 10:20"),
    ({"frequency": "quarter_hourly", "minute": 20}, "2028-03-01 10:20", "2028-03-01 10:35"),
    ({"frequency": "quarter_hourly", "minute": 5}, "2028-03-01 10:59", "2028-03-01 11:05"),
    ({"frequency": "quarter_hourly", "minute": 5}, "2028-03-01 10:03", "2028-03-01 10:05"),
    ({"frequency": "quarter_hourly", "minute": 59}, "2028-03-01 10:05", "2028-03-01 10:14"),
    ({"frequency": "quarter_hourly"}, "2027-12-31 23:59", "2028-01-01 00:00"),
    # hourly
    ({"frequency": "hourly"}, "2028-03-01 10:00", "2028-03-01 11:00"),
    ({"frequency": "hourly", "minute": 30}, "2028-03-01 10:29", "2028-03-01 10:30"),
    ({"frequency": "hourly", "minute": 30}, "2028-03-01 10:30", "2028-03-01 11:30"),
    ({"frequency": "hourly", "minute": 30}, "2027-12-31 23:45", "2028-01-01 00:30"),
    # daily, month ends, leap day, year end
    ({"frequency": "daily", "hour": 10, "minute": 30}, "2028-01-31 11:00", "2028-02-01 10:30"),
    ({"frequency": "daily", "hour": 10, "minute": 30}, "2028-02-28 11:00", "2028-02-29 10:30"),
    ({"frequency": "daily", "hour": 10, "minute": 30}, "2027-02-28 11:00", "2027-03-01 10:30"),
    ({"frequency": "daily", "hour": 10, "minute": 30}, "2028-01-31 10:30", "2028-02-01 10:30"),
    ({"frequency": "daily", "hour": 10, "minute": 30}, "2028-01-31 10:29", "2028-01-31 10:30"),
    ({"frequency": "daily", "hour": 0, "minute": 0}, "2027-12-31 23:59", "2028-01-01 00:00"),
    ({"frequency": "daily"}, "2028-03-01 00:00", "2028-03-02 00:00"),
    # hour 24 is the midnight that ends the day
    ({"frequency": "daily", "hour": 24}, "2028-02-28 12:00", "2028-02-29 00:00"),
    ({"frequency": "daily", "hour": 24}, "2027-12-31 23:59", "2028-01-01 00:00"),
    ({"frequency": "daily", "hour": 24, "minute": 30}, "2028-02-29 00:10", "2028-02-29 00:30"),
    ({"frequency": "weekly", "day": "Sunday", "hour": 24}, "2027-12-26 12:00", "2027-12-27 00:00"),
    ({"frequency": "weekly", "day": "Friday", "hour": 24}, "2027-12-31 23:00", "2028-01-01 00:00"),
    # weekly, across the year boundary (2027-12-31 is a Friday, 2028-01-03 a Monday)
    (weekly("Monday", 10, 30), "2027-12-31 12:00", "2028-01-03 10:30"),
    (weekly("Monday", 10, 30), "2028-01-03 10:30", "2028-01-10 10:30"),
    (weekly("Friday", 23, 59), "2027-12-31 23:58", "2027-12-31 23:59"),
    (weekly("Friday", 23, 59), "2027-12-31 23:59", "2028-01-07 23:59"),
    ({"frequency": "weekly", "day": "Tuesday"}, "2028-02-28 00:00", "2028-02-29 00:00"),
    # expression
    (cron("0 12 31 * *"), "2028-01-31 12:00", "2028-03-31 12:00"),  # February has no 31st
    (cron("0 0 29 2 *"), "2027-03-01 00:00", "2028-02-29 00:00"),
    (cron("59 23 31 12 *"), "2027-12-31 23:59", "2028-12-31 23:59"),
    (cron("*/15 * * * *"), "2028-03-01 10:15", "2028-03-01 10:30"),
    (cron("0 9 * * 1-5"), "2027-12-31 09:00", "2028-01-03 09:00"),
    (cron("30 10 * * *"), "2028-01-31 10:30:00.5", "2028-02-01 10:30"),
]  # fmt: skip


@pytest.mark.parametrize(("schedule", "after", "expected"), NEXT_RUN_CASES)
def test_next_run_after(schedule: dict[str, Any], after: str, expected: str) -> None:
    result = next_run_after(spec(**schedule), at(after))
    assert result == at(expected)
    assert result is not None and result.tzinfo is UTC


def test_never_has_no_next_run() -> None:
    assert next_run_after(ScheduleSpec(), at("2028-01-01 00:00")) is None


def test_continuous_runs_after_a_configurable_interval() -> None:
    continuous = spec(frequency="continuous")
    assert next_run_after(continuous, at("2027-12-31 23:59:30")) == at("2028-01-01 00:00:30")
    interval = timedelta(seconds=10)
    assert next_run_after(continuous, at("2028-01-01 00:00"), continuous_interval=interval) == at(
        "2028-01-01 00:00:10"
    )
    with pytest.raises(ValueError, match="continuous_interval must be positive"):
        next_run_after(continuous, at("2028-01-01 00:00"), continuous_interval=timedelta(0))


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        next_run_after(spec(frequency="hourly"), datetime(2028, 1, 1))
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        due_runs(spec(frequency="hourly"), at("2028-01-01 00:00"), datetime(2028, 1, 1))
    with pytest.raises(ValueError, match="last_scheduled must be timezone-aware"):
        due_runs(spec(frequency="hourly"), datetime(2028, 1, 1), at("2028-01-02 00:00"))


def test_other_timezones_are_computed_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    after = datetime(2028, 1, 1, 1, 0, tzinfo=plus_two)  # 2027-12-31 23:00 UTC
    result = next_run_after(spec(frequency="daily", hour=23, minute=30), after)
    assert result == at("2027-12-31 23:30") and result is not None and result.tzinfo is UTC


# The fixed frequencies are cron expressions in disguise; croniter is the independent
# oracle, checked at many instants around month, leap-day and year boundaries.
EQUIVALENT_CRONS: list[tuple[dict[str, Any], str]] = [
    ({"frequency": "quarter_hourly"}, "0,15,30,45 * * * *"),
    ({"frequency": "quarter_hourly", "minute": 37}, "7,22,37,52 * * * *"),
    ({"frequency": "quarter_hourly", "minute": 59}, "14,29,44,59 * * * *"),
    ({"frequency": "hourly", "minute": 59}, "59 * * * *"),
    ({"frequency": "daily", "hour": 23, "minute": 59}, "59 23 * * *"),
    ({"frequency": "daily", "hour": 24, "minute": 15}, "15 0 * * *"),
    ({"frequency": "weekly", "day": "Sunday", "hour": 0, "minute": 0}, "0 0 * * 0"),
    ({"frequency": "weekly", "day": "Saturday", "hour": 24, "minute": 5}, "5 0 * * 0"),
    ({"frequency": "weekly", "day": "Wednesday", "hour": 12}, "0 12 * * 3"),
]
PROBE_STARTS = ["2027-12-24 00:00", "2028-01-27 00:00", "2028-02-25 00:00", "2027-02-25 00:00"]


@pytest.mark.parametrize(("schedule", "cron"), EQUIVALENT_CRONS)
def test_fixed_frequencies_agree_with_the_equivalent_cron(
    schedule: dict[str, Any], cron: str
) -> None:
    fixed, oracle = spec(**schedule), spec(frequency="expression", cron_expression=cron)
    for start in PROBE_STARTS:
        # 13-minute-and-7-second steps land on, just before and just after boundaries.
        for step in range(0, 800):
            after = at(start) + step * timedelta(minutes=13, seconds=7)
            assert next_run_after(fixed, after) == next_run_after(oracle, after), after


# --- due_runs ---------------------------------------------------------------------------


def test_due_runs_enqueues_one_catch_up_run_after_an_outage() -> None:
    daily = spec(frequency="daily", hour=10, minute=30)
    last = at("2028-01-01 10:30")
    clock = FakeClock(at("2028-01-04 15:00"))  # three slots were missed while down
    due = due_runs(daily, last, clock.now())
    assert due == at("2028-01-04 10:30")
    clock.advance(timedelta(minutes=1))
    assert due_runs(daily, due, clock.now()) is None
    clock.current = at("2028-01-05 10:30")  # now itself is included
    assert due_runs(daily, due, clock.now()) == at("2028-01-05 10:30")


def test_scheduler_loop_with_an_outage_runs_each_slot_once_and_catches_up_once() -> None:
    hourly = spec(frequency="hourly")
    clock = FakeClock(at("2028-02-28 22:00:30"))
    last: datetime | None = at("2028-02-28 22:00")  # created exactly on a slot: not owed
    enqueued: list[datetime] = []
    while clock.now() < at("2028-02-29 09:00:31"):
        outage = at("2028-02-29 01:30") <= clock.now() < at("2028-02-29 07:10")
        if not outage and (due := due_runs(hourly, last, clock.now())) is not None:
            enqueued.append(due)
            last = due
        clock.advance(timedelta(minutes=1))
    expected = ["2028-02-28 23:00", "2028-02-29 00:00", "2028-02-29 01:00"]
    expected += ["2028-02-29 07:00", "2028-02-29 08:00", "2028-02-29 09:00"]
    assert enqueued == [at(text) for text in expected]


def test_due_runs_for_a_cron_across_the_year_end() -> None:
    noon = spec(frequency="expression", cron_expression="0 12 * * *")
    assert due_runs(noon, at("2027-12-30 12:00"), at("2028-01-02 11:59")) == at("2028-01-01 12:00")
    assert due_runs(noon, at("2027-12-30 12:00"), at("2028-01-02 12:00")) == at("2028-01-02 12:00")
    assert due_runs(noon, at("2028-01-02 12:00"), at("2028-01-02 12:00:59")) is None


def test_due_runs_quarter_hourly_on_and_just_before_the_boundary() -> None:
    quarter = spec(frequency="quarter_hourly")
    last = at("2028-01-31 23:45")
    assert due_runs(quarter, last, at("2028-01-31 23:59:59.999999")) is None
    assert due_runs(quarter, last, at("2028-02-01 00:00")) == at("2028-02-01 00:00")
    assert due_runs(quarter, last, at("2028-02-01 00:44")) == at("2028-02-01 00:30")


def test_due_runs_continuous_is_one_interval_grid_from_the_last_run() -> None:
    continuous = spec(frequency="continuous")
    last = at("2028-01-01 10:00")
    assert due_runs(continuous, last, at("2028-01-01 10:00:59")) is None
    assert due_runs(continuous, last, at("2028-01-01 10:01")) == at("2028-01-01 10:01")
    assert due_runs(continuous, last, at("2028-01-01 10:05:30")) == at("2028-01-01 10:05")


@pytest.mark.parametrize(
    ("schedule", "last", "now"),
    [
        (ScheduleSpec(), at("2028-01-01 00:00"), at("2029-01-01 00:00")),  # never
        (spec(frequency="hourly"), None, at("2028-01-01 05:00")),  # no reference point
        (spec(frequency="hourly"), at("2028-01-01 06:00"), at("2028-01-01 05:00")),  # skew
    ],
)
def test_due_runs_returns_none_when_nothing_is_owed(
    schedule: ScheduleSpec, last: datetime | None, now: datetime
) -> None:
    assert due_runs(schedule, last, now) is None
