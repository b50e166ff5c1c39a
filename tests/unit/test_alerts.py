"""Alert configurations: validation, and the pure evaluation of a run against the runs
before it, for every type, with first_time/every_time and recovery."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from reflow.errors import BadRequest
from reflow.services import alerts
from reflow.services.alerts import RunFacts, evaluate, validate_alert_attributes

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def cfg(kind: str, alert_id: int = 1, **extra: Any) -> dict[str, Any]:
    item = {"type": kind, "id": alert_id, **extra}
    return validate_alert_attributes([item])[0]


def run(run_id: int = 10, status: str = "completed", **counters: Any) -> RunFacts:
    fields = {k: counters.pop(k) for k in list(counters) if k in RunFacts.__dataclass_fields__}
    return RunFacts(run_id, status, created_at=T0, started_at=T0,
                    completed_at=T0 + dt.timedelta(minutes=1), counters=counters, **fields)


def actions(configs: list[dict[str, Any]], facts: RunFacts, *, previous: list[RunFacts] = (),
            open_ids: set[int] = frozenset(), phase: str = "finished") -> list[tuple[str, int]]:
    out = evaluate(configs, run=facts, previous=list(previous), open_ids=set(open_ids),
                   phase=phase)  # type: ignore[arg-type]
    return [(d.action, d.alert["id"]) for d in out]


# --- validation -------------------------------------------------------------------


def test_validation_fills_defaults_and_assigns_ids() -> None:
    items = validate_alert_attributes([
        {"type": "FailureAlertConfiguration", "options": None},
        {"type": "InvalidRecordPercentAlertConfiguration", "id": 7, "send_for": "every_time",
         "should_send_recovery": False, "options": {"threshold": "75"}},
        {"type": "RuntimeAlertConfiguration", "options": {"threshold": 2, "unit": "hours",
                                                          "start_type": "scheduled"}},
    ])
    assert items[0] == {"id": 8, "type": "FailureAlertConfiguration", "send_for": "first_time",
                        "should_send_recovery": True, "options": {}}
    assert items[1]["id"] == 7 and items[1]["options"] == {"threshold": "75"}
    assert items[2]["id"] == 9


@pytest.mark.parametrize(("item", "field"), [
    ("x", "alert_attributes[0] must be an object"),
    ({"type": "Nope"}, "alert_attributes[0].type"),
    ({"type": "FailureAlertConfiguration", "send_for": "always"}, "alert_attributes[0].send_for"),
    ({"type": "FailureAlertConfiguration", "should_send_recovery": "yes"},
     "alert_attributes[0].should_send_recovery"),
    ({"type": "FailureAlertConfiguration", "id": "1"}, "alert_attributes[0].id"),
    ({"type": "FailureAlertConfiguration", "options": [1]}, "alert_attributes[0].options"),
    ({"type": "InvalidRecordPercentAlertConfiguration", "options": {}},
     "alert_attributes[0].options.threshold"),
    ({"type": "InvalidRecordPercentAlertConfiguration", "options": {"threshold": 101}},
     "alert_attributes[0].options.threshold"),
    ({"type": "InvalidRecordPercentAlertConfiguration", "options": {"threshold": "abc"}},
     "alert_attributes[0].options.threshold"),
    ({"type": "RecordCountDeviationAlertConfiguration", "options": {"threshold": 5}},
     "alert_attributes[0].options.record_type"),
    ({"type": "RecordCountDeviationAlertConfiguration",
      "options": {"threshold": 5, "record_type": "rows"}},
     "alert_attributes[0].options.record_type"),
    ({"type": "RecordCountDeviationAlertConfiguration",
      "options": {"threshold": 5, "record_type": "records_failed", "number_of_runs": 1.5}},
     "alert_attributes[0].options.number_of_runs"),
    ({"type": "RuntimeAlertConfiguration", "options": {"threshold": 0}},
     "alert_attributes[0].options.threshold"),
    ({"type": "RuntimeAlertConfiguration", "options": {"threshold": 5, "unit": "days"}},
     "alert_attributes[0].options.unit"),
    ({"type": "RuntimeAlertConfiguration", "options": {"threshold": 5, "start_type": "queued"}},
     "alert_attributes[0].options.start_type"),
    ({"type": "StatusAlertConfiguration", "options": {"status_name": "failed"}},
     "alert_attributes[0].options.status_name"),
])
def test_validation_names_the_field(item: Any, field: str) -> None:
    with pytest.raises(BadRequest) as exc:
        validate_alert_attributes([item])
    assert field in exc.value.message


def test_validation_rejects_non_list_and_duplicate_ids() -> None:
    with pytest.raises(BadRequest, match="alert_attributes must be an array"):
        validate_alert_attributes({"type": "FailureAlertConfiguration"})
    with pytest.raises(BadRequest, match="ids must be unique"):
        validate_alert_attributes([{"type": "FailureAlertConfiguration", "id": 1},
                                   {"type": "FullSyncTriggerAlertConfiguration", "id": 1}])


def test_lenient_skips_invalid_stored_items() -> None:
    stored = [{"type": "Bogus"}, {"type": "FailureAlertConfiguration"}]
    assert [(a["id"], a["type"]) for a in alerts.lenient(stored)] == [
        (2, "FailureAlertConfiguration")]


# --- evaluation -------------------------------------------------------------------


def test_failure_first_time_raises_once_then_recovers() -> None:
    failure = [cfg("FailureAlertConfiguration")]
    failed = run(status="failed", error_message="boom")
    decisions = evaluate(failure, run=failed, previous=[], open_ids=set(), phase="finished")
    assert [(d.action, d.message) for d in decisions] == [("raise", "Sync Failed")]
    assert "boom" in decisions[0].details
    assert actions(failure, failed, open_ids={1}) == []  # already open: first_time is quiet
    recovered = evaluate(failure, run=run(), previous=[], open_ids={1}, phase="finished")
    assert [(d.action, d.notify) for d in recovered] == [("resolve", True)]
    assert actions(failure, run()) == []  # nothing open, nothing wrong


def test_every_time_raises_on_each_violation() -> None:
    failure = [cfg("FailureAlertConfiguration", send_for="every_time")]
    assert actions(failure, run(status="failed"), open_ids={1}) == [("raise", 1)]


def test_recovery_without_notification() -> None:
    failure = [cfg("FailureAlertConfiguration", should_send_recovery=False)]
    decisions = evaluate(failure, run=run(), previous=[], open_ids={1}, phase="finished")
    assert [(d.action, d.notify) for d in decisions] == [("resolve", False)]


def test_skipped_and_canceled_runs_change_nothing() -> None:
    failure = [cfg("FailureAlertConfiguration")]
    assert actions(failure, run(status="skipped")) == []
    assert actions(failure, run(status="failed", canceled=True)) == []


def test_invalid_record_percent() -> None:
    pct = [cfg("InvalidRecordPercentAlertConfiguration", options={"threshold": "10"})]
    assert actions(pct, run(source_record_count=100, source_record_invalids=6,
                            records_failed=5)) == [("raise", 1)]
    assert actions(pct, run(source_record_count=100, source_record_invalids=6,
                            records_failed=4)) == []
    assert actions(pct, run(source_record_count=100, source_record_invalids=0,
                            records_failed=0), open_ids={1}) == [("resolve", 1)]
    # a failed run has no reliable counts: no decision either way
    assert actions(pct, run(status="failed", source_record_count=None), open_ids={1}) == []


def test_full_sync_trigger() -> None:
    full = [cfg("FullSyncTriggerAlertConfiguration", options={})]
    assert actions(full, run(full_sync=True)) == [("raise", 1)]
    assert actions(full, run(full_sync=False)) == []
    assert actions(full, run(full_sync=False), open_ids={1}) == [("resolve", 1)]


def test_record_count_deviation() -> None:
    dev = [cfg("RecordCountDeviationAlertConfiguration",
               options={"threshold": "20", "record_type": "source_record_count",
                        "number_of_runs": 2})]
    history = [run(9, source_record_count=100), run(8, source_record_count=100),
               run(7, source_record_count=10_000)]  # beyond number_of_runs: ignored
    assert actions(dev, run(source_record_count=125), previous=history) == [("raise", 1)]
    assert actions(dev, run(source_record_count=115), previous=history) == []
    assert actions(dev, run(source_record_count=79), previous=history) == [("raise", 1)]
    assert actions(dev, run(source_record_count=100), previous=history, open_ids={1}) == [
        ("resolve", 1)]
    assert actions(dev, run(source_record_count=500), previous=[]) == []  # nothing to compare


def test_record_count_deviation_maps_record_types_and_skips_failed_history() -> None:
    dev = [cfg("RecordCountDeviationAlertConfiguration",
               options={"threshold": 50, "record_type": "records_invalid"})]
    history = [run(9, status="failed", source_record_invalids=0),
               run(8, source_record_invalids=10)]
    assert actions(dev, run(source_record_invalids=16), previous=history) == [("raise", 1)]
    assert actions(dev, run(source_record_invalids=14), previous=history) == []


def test_runtime_actual_and_scheduled() -> None:
    actual = [cfg("RuntimeAlertConfiguration", options={"threshold": 30, "unit": "minutes"})]
    slow = RunFacts(1, "completed", created_at=T0, started_at=T0 + dt.timedelta(minutes=20),
                    completed_at=T0 + dt.timedelta(minutes=45),
                    scheduled_execution_time=T0)
    assert actions(actual, slow) == []  # 25 minutes since it actually started
    scheduled = [cfg("RuntimeAlertConfiguration",
                     options={"threshold": "30", "unit": "minutes", "start_type": "scheduled"})]
    assert actions(scheduled, slow) == [("raise", 1)]  # 45 minutes since it was scheduled
    hours = [cfg("RuntimeAlertConfiguration", options={"threshold": 1, "unit": "hours"})]
    assert actions(hours, slow) == []
    assert actions(hours, slow, open_ids={1}) == [("resolve", 1)]


def test_status_alerts_notify_on_every_match_and_never_resolve() -> None:
    started = [cfg("StatusAlertConfiguration", options={"status_name": "started"})]
    working = RunFacts(1, "working", started_at=T0)
    assert actions(started, working, phase="started") == [("raise", 1)]
    assert actions(started, working, phase="started", open_ids={1}) == [("raise", 1)]
    assert actions(started, run(), phase="finished") == []
    completed = [cfg("StatusAlertConfiguration", options={"status_name": "completed"})]
    assert actions(completed, run(status="failed")) == [("raise", 1)]
    assert actions(completed, working, phase="started") == []


def test_several_alerts_are_independent() -> None:
    configs = validate_alert_attributes([
        {"type": "FailureAlertConfiguration"},
        {"type": "FullSyncTriggerAlertConfiguration"},
    ])
    assert actions(configs, run(full_sync=True), open_ids={1}) == [("resolve", 1), ("raise", 2)]
