"""Sync alerts (Census ``alert_attributes``): validation, and a pure evaluation of one
run against the runs before it.

State lives in alert instances (``db/tables_hooks.AlertInstance``): an alert is *open*
while it has a raised, unresolved instance. ``send_for: first_time`` raises once per
episode, ``every_time`` on every violating run; the first run that no longer violates
resolves the episode (and notifies when ``should_send_recovery``).
``StatusAlertConfiguration`` is a notification, not a condition: it raises on every
matching run and is never open or resolved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from reflow.db.repo import Page, PageParams, paginate
from reflow.db.tables_hooks import AlertInstance
from reflow.errors import BadRequest

FAILURE = "FailureAlertConfiguration"
INVALID_PERCENT = "InvalidRecordPercentAlertConfiguration"
FULL_SYNC = "FullSyncTriggerAlertConfiguration"
DEVIATION = "RecordCountDeviationAlertConfiguration"
RUNTIME = "RuntimeAlertConfiguration"
STATUS = "StatusAlertConfiguration"
ALERT_TYPES = (FAILURE, INVALID_PERCENT, FULL_SYNC, DEVIATION, RUNTIME, STATUS)
SEND_FOR = ("first_time", "every_time")
#: ``record_type`` option -> sync run counter.
RECORD_TYPES = {
    "source_record_count": "source_record_count",
    "records_updates": "source_record_updates",
    "records_deletes": "source_record_deletes",
    "records_invalid": "source_record_invalids",
    "records_processed": "records_processed",
    "records_updated": "records_updated",
    "records_failed": "records_failed",
}
#: The reference does not name the "past runs to compare against" option; Reflow's name.
DEFAULT_DEVIATION_RUNS = 5
UNITS = {"minutes": 60, "hours": 3600}
Phase = Literal["started", "finished"]


# --- validation -------------------------------------------------------------------


def validate_alert_attributes(value: Any) -> list[dict[str, Any]]:
    """Normalised ``alert_attributes``: defaults filled in, ``id`` assigned where
    missing; options are kept as sent (Terraform sends numbers as strings).
    Raises BadRequest naming the field, e.g. ``alert_attributes[1].options.threshold``."""
    if not isinstance(value, list):
        raise BadRequest("alert_attributes must be an array")
    items = [_validate_item(item, i) for i, item in enumerate(value)]
    ids = [item["id"] for item in items if item["id"] is not None]
    if len(ids) != len(set(ids)):
        raise BadRequest("alert_attributes ids must be unique")
    next_id = max(ids, default=0) + 1
    for item in items:
        if item["id"] is None:
            item["id"], next_id = next_id, next_id + 1
    return items


def _validate_item(item: Any, i: int) -> dict[str, Any]:
    where = f"alert_attributes[{i}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object")
    kind = item.get("type")
    if kind not in ALERT_TYPES:
        raise BadRequest(f"{where}.type must be one of: {', '.join(ALERT_TYPES)}")
    alert_id = item.get("id")
    if alert_id is not None and (isinstance(alert_id, bool) or not isinstance(alert_id, int)):
        raise BadRequest(f"{where}.id must be an integer")
    send_for = item.get("send_for") or "first_time"
    if send_for not in SEND_FOR:
        raise BadRequest(f"{where}.send_for must be one of: {', '.join(SEND_FOR)}")
    recovery = item.get("should_send_recovery", True)
    if recovery is None:
        recovery = True
    if not isinstance(recovery, bool):
        raise BadRequest(f"{where}.should_send_recovery must be a boolean")
    options = item.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest(f"{where}.options must be an object or null")
    _validate_options(kind, options, f"{where}.options")
    return {
        "id": alert_id,
        "type": kind,
        "send_for": send_for,
        "should_send_recovery": recovery,
        "options": options,
    }


def _validate_options(kind: str, options: dict[str, Any], where: str) -> None:
    if kind == INVALID_PERCENT:
        _number(options, "threshold", where, low=0, high=100)
    elif kind == DEVIATION:
        _number(options, "threshold", where, low=0)
        _choice(options, "record_type", where, tuple(RECORD_TYPES))
        if options.get("number_of_runs") is not None:
            runs = _number(options, "number_of_runs", where, low=1)
            if runs != int(runs):
                raise BadRequest(f"{where}.number_of_runs must be a whole number")
    elif kind == RUNTIME:
        _number(options, "threshold", where, low=0, strict_low=True)
        _choice(options, "unit", where, tuple(UNITS), default="minutes")
        _choice(options, "start_type", where, ("actual", "scheduled"), default="actual")
    elif kind == STATUS:
        _choice(options, "status_name", where, ("started", "completed"))


def parse_number(value: Any) -> float | None:
    """A number, or a string holding one (Terraform's form); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _number(
    options: dict[str, Any],
    key: str,
    where: str,
    *,
    low: float,
    high: float | None = None,
    strict_low: bool = False,
) -> float:
    number = parse_number(options.get(key))
    if number is None:
        raise BadRequest(f"{where}.{key} is required and must be a number")
    too_low = number <= low if strict_low else number < low
    if too_low or (high is not None and number > high):
        bounds = f"greater than {low:g}" if strict_low else f"at least {low:g}"
        if high is not None:
            bounds += f" and at most {high:g}"
        raise BadRequest(f"{where}.{key} must be {bounds}")
    return number


def _choice(
    options: dict[str, Any],
    key: str,
    where: str,
    allowed: tuple[str, ...],
    default: str | None = None,
) -> str:
    value = options.get(key, default)
    if value not in allowed:
        raise BadRequest(f"{where}.{key} must be one of: {', '.join(allowed)}")
    return str(value)


def lenient(configs: Any) -> list[dict[str, Any]]:
    """Stored configurations that validate, skipping the rest (stored before validation
    existed); a missing id falls back to the item's position + 1."""
    if not isinstance(configs, list):
        return []
    out = []
    for i, item in enumerate(configs):
        try:
            normalised = _validate_item(item, i)
        except BadRequest:
            continue
        if normalised["id"] is None:
            normalised["id"] = i + 1
        out.append(normalised)
    return out


# --- evaluation (pure) --------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    id: int
    status: str
    full_sync: bool = False
    canceled: bool = False
    error_message: str | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    scheduled_execution_time: dt.datetime | None = None
    counters: dict[str, int | None] = field(default_factory=dict)

    @classmethod
    def of(cls, run: Any) -> RunFacts:
        counters = {c: getattr(run, c) for c in set(RECORD_TYPES.values())}
        return cls(
            run.id,
            run.status,
            bool(run.full_sync),
            bool(run.canceled),
            run.error_message,
            run.created_at,
            run.started_at,
            run.completed_at,
            run.scheduled_execution_time,
            counters,
        )


@dataclass(frozen=True)
class Check:
    triggered: bool
    message: str = ""
    details: str = ""


@dataclass(frozen=True)
class Decision:
    action: Literal["raise", "resolve"]
    alert: dict[str, Any]
    message: str
    details: str
    #: For ``resolve``: whether a ``sync.alert.resolved`` event is sent.
    notify: bool = True


def evaluate(
    alerts: list[dict[str, Any]],
    *,
    run: RunFacts,
    previous: list[RunFacts],
    open_ids: set[int],
    phase: Phase,
) -> list[Decision]:
    """What to raise and resolve for ``run`` at ``phase``. ``previous``: earlier
    finished runs of the sync, newest first. Skipped and canceled runs change nothing."""
    if run.status == "skipped" or run.canceled:
        return []
    decisions = []
    for alert in alerts:
        if _phase(alert) != phase:
            continue
        check = _check(alert, run, previous)
        if check is None:
            continue
        decision = _decide(alert, check, run, is_open=alert["id"] in open_ids)
        if decision is not None:
            decisions.append(decision)
    return decisions


def _phase(alert: dict[str, Any]) -> Phase:
    if alert["type"] == STATUS and alert["options"].get("status_name") == "started":
        return "started"
    return "finished"


def _decide(
    alert: dict[str, Any], check: Check, run: RunFacts, *, is_open: bool
) -> Decision | None:
    if alert["type"] == STATUS:
        return Decision("raise", alert, check.message, check.details) if check.triggered else None
    if check.triggered:
        if not is_open or alert["send_for"] == "every_time":
            return Decision("raise", alert, check.message, check.details)
        return None
    if is_open:
        return Decision(
            "resolve",
            alert,
            f"Resolved: {_TITLES[alert['type']]}",
            f"Sync run {run.id} no longer meets the alert condition.",
            notify=alert["should_send_recovery"],
        )
    return None


def _check(alert: dict[str, Any], run: RunFacts, previous: list[RunFacts]) -> Check | None:
    return _CHECKS[alert["type"]](alert["options"], run, previous)


def _failure(_: dict[str, Any], run: RunFacts, __: list[RunFacts]) -> Check:
    return Check(
        run.status == "failed",
        "Sync Failed",
        f"Sync has failed with error: {run.error_message or 'unknown error'}",
    )


def _invalid_percent(options: dict[str, Any], run: RunFacts, _: list[RunFacts]) -> Check | None:
    total = run.counters.get("source_record_count")
    if run.status != "completed" or not total:
        return None
    bad = (run.counters.get("source_record_invalids") or 0) + (
        run.counters.get("records_failed") or 0
    )
    percent = 100.0 * bad / total
    threshold = parse_number(options.get("threshold")) or 0.0
    return Check(
        percent > threshold,
        "Invalid or rejected records above threshold",
        f"{percent:.1f}% of {total} source records were invalid or rejected "
        f"(threshold {threshold:g}%).",
    )


def _full_sync(_: dict[str, Any], run: RunFacts, __: list[RunFacts]) -> Check:
    return Check(run.full_sync, "Full sync triggered", f"Sync run {run.id} was a full sync.")


def _deviation(options: dict[str, Any], run: RunFacts, previous: list[RunFacts]) -> Check | None:
    counter = RECORD_TYPES[options["record_type"]]
    value = run.counters.get(counter)
    count = int(parse_number(options.get("number_of_runs")) or DEFAULT_DEVIATION_RUNS)
    history = [r.counters.get(counter) for r in previous if r.status == "completed"]
    past = [v for v in history if v is not None][:count]
    if run.status != "completed" or value is None or not past:
        return None
    mean = sum(past) / len(past)
    threshold = parse_number(options.get("threshold")) or 0.0
    deviation = abs(value - mean) / mean * 100.0 if mean else (0.0 if value == 0 else float("inf"))
    return Check(
        deviation > threshold,
        "Record count deviation",
        f"{options['record_type']} was {value}, {deviation:.1f}% from the average "
        f"{mean:g} of the last {len(past)} runs (threshold {threshold:g}%).",
    )


def _runtime(options: dict[str, Any], run: RunFacts, _: list[RunFacts]) -> Check | None:
    if options.get("start_type", "actual") == "scheduled":
        start = run.scheduled_execution_time or run.created_at
    else:
        start = run.started_at or run.created_at
    if start is None or run.completed_at is None:
        return None
    seconds = (_aware(run.completed_at) - _aware(start)).total_seconds()
    unit = options.get("unit", "minutes")
    limit = (parse_number(options.get("threshold")) or 0.0) * UNITS[unit]
    return Check(
        seconds > limit,
        "Sync runtime above threshold",
        f"Sync run {run.id} took {seconds / UNITS[unit]:.1f} {unit} "
        f"(threshold {limit / UNITS[unit]:g} {unit}).",
    )


def _status(options: dict[str, Any], run: RunFacts, _: list[RunFacts]) -> Check:
    name = options.get("status_name")
    if name == "started":
        return Check(True, "Sync started", f"Sync run {run.id} started.")
    return Check(
        run.status in ("completed", "failed"),
        "Sync completed",
        f"Sync run {run.id} finished with status {run.status}.",
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_CHECKS = {
    FAILURE: _failure,
    INVALID_PERCENT: _invalid_percent,
    FULL_SYNC: _full_sync,
    DEVIATION: _deviation,
    RUNTIME: _runtime,
    STATUS: _status,
}
_TITLES = {
    FAILURE: "Sync Failed",
    INVALID_PERCENT: "Invalid or rejected records",
    FULL_SYNC: "Full sync triggered",
    DEVIATION: "Record count deviation",
    RUNTIME: "Sync runtime",
    STATUS: "Sync status",
}


# --- reading alert instances ----------------------------------------------------------


def list_instances(
    session: Session,
    *,
    workspace_id: int,
    params: PageParams,
    sync_id: int | None = None,
    run_id: int | None = None,
    status: str | None = None,
) -> Page:
    """Alert instances of a sync, or those a run raised or resolved."""
    if status is not None and status not in ("raised", "resolved"):
        raise BadRequest("status must be one of: raised, resolved")
    stmt = select(AlertInstance).where(AlertInstance.workspace_id == workspace_id)
    if sync_id is not None:
        stmt = stmt.where(AlertInstance.sync_id == sync_id)
    if run_id is not None:
        stmt = stmt.where(
            or_(AlertInstance.sync_run_id == run_id, AlertInstance.resolved_by_run_id == run_id)
        )
    if status is not None:
        stmt = stmt.where(AlertInstance.status == status)
    return paginate(session, stmt, params, AlertInstance.id)
