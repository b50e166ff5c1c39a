"""Prometheus metrics read from the control-plane database at scrape time.

Runs execute in worker processes while ``/metrics`` is served by API processes, so the
numbers come from the one place every process writes to: any API process answers the
same, and nothing is lost when a worker restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from reflow.db.tables import SyncRun, utcnow
from reflow.runtime import Runtime
from reflow.storage import Usage

STATUSES = ("queued", "working", "completed", "failed", "skipped")
log = logging.getLogger(__name__)

DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


class RunsCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        with self.runtime.session() as session:
            by_status = dict(session.execute(
                select(SyncRun.status, func.count()).group_by(SyncRun.status)
            ).all())
            oldest = session.scalar(select(func.min(SyncRun.created_at))
                                    .where(SyncRun.status == "queued"))
            records = session.execute(select(
                func.coalesce(func.sum(SyncRun.records_updated), 0),
                func.coalesce(func.sum(SyncRun.records_failed), 0),
                func.coalesce(func.sum(SyncRun.source_record_invalids), 0),
            )).one()
            seconds = _duration_seconds(self.runtime)
            finished = SyncRun.status.in_(("completed", "failed"))
            done = (finished, SyncRun.started_at.is_not(None), SyncRun.completed_at.is_not(None))
            bucket_counts = session.execute(select(
                *(func.sum(case((seconds <= b, 1), else_=0)) for b in DURATION_BUCKETS),
                func.count(), func.coalesce(func.sum(seconds), 0.0),
            ).where(*done)).one()
        yield _runs(by_status)
        yield _records(records)
        yield _lag(oldest)
        yield _durations(bucket_counts)
        yield from _storage(self.runtime)


#: Storage usage is measured at most this often per process: on object storage it is a
#: listing of every object under the prefix, which a scrape every 15 s must not repeat.
USAGE_EVERY = 300.0


class _UsageCache:
    """The last measured usage of each store, keyed by kind and location. One thread
    measures a stale entry; scrapes meanwhile report the previous value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._measuring: set[tuple[str, str]] = set()
        self._values: dict[tuple[str, str], tuple[float, Usage]] = {}

    def get(self, kind: str, where: str, measure: Callable[[], Usage]) -> Usage | None:
        key = (kind, where)
        now = time.monotonic()
        with self._lock:
            known = self._values.get(key)
            if (known and now - known[0] < USAGE_EVERY) or key in self._measuring:
                return known[1] if known else None
            self._measuring.add(key)
        try:
            usage = measure()
        finally:
            with self._lock:
                self._measuring.discard(key)
        with self._lock:
            self._values[key] = (time.monotonic(), usage)
        return usage


_usage = _UsageCache()


def _storage(runtime: Runtime) -> Iterator[Metric]:
    """What runs keep outside the state database (storage.py), by kind, measured at most
    every ``USAGE_EVERY`` seconds."""
    size = GaugeMetricFamily("reflow_storage_bytes", "Bytes kept in run storage.",
                             labels=["kind"])
    objects = GaugeMetricFamily("reflow_storage_objects", "Files kept in run storage.",
                                labels=["kind"])
    stores: tuple[tuple[str, str, Any], ...] = (
        ("snapshots", runtime.snapshots.url, runtime.snapshots),
        ("record_logs", runtime.run_files.shared.url if runtime.run_files.shared
         else str(runtime.run_files.root), runtime.run_files),
    )
    for kind, where, store in stores:
        try:
            usage = _usage.get(kind, where, store.usage)
        except Exception:  # an unreachable store must not break the whole scrape
            log.warning("metrics: cannot read the usage of %s storage", kind, exc_info=True)
            continue
        if usage is not None:
            size.add_metric([kind], usage.bytes)
            objects.add_metric([kind], usage.objects)
    yield size
    yield objects


def _runs(by_status: dict[str, int]) -> Metric:
    metric = GaugeMetricFamily("reflow_sync_runs", "Sync runs by status.", labels=["status"])
    for status in sorted(set(STATUSES) | set(by_status)):
        metric.add_metric([status], by_status.get(status, 0))
    return metric


def _records(totals: Sequence[int | None]) -> Metric:
    metric = CounterMetricFamily(
        "reflow_records", "Records of finished runs by outcome.", labels=["outcome"]
    )
    for outcome, value in zip(("updated", "failed", "invalid"), totals, strict=True):
        metric.add_metric([outcome], float(value or 0))
    return metric


def _lag(oldest: object) -> Metric:
    from reflow.jobs.scheduler import as_utc

    age = 0.0 if oldest is None else (utcnow() - as_utc(oldest)).total_seconds()  # type: ignore[arg-type]
    return GaugeMetricFamily(
        "reflow_queue_lag_seconds", "Age of the oldest queued sync run (0 when none).",
        value=max(age, 0.0),
    )


def _durations(row: Sequence[Any]) -> Metric:
    *cumulative, count, total = row
    buckets = [(str(b), float(c or 0)) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)]
    buckets.append(("+Inf", float(count or 0)))
    metric = HistogramMetricFamily(
        "reflow_sync_run_duration_seconds", "Duration of finished sync runs."
    )
    metric.add_metric([], buckets, sum_value=float(total or 0))  # type: ignore[arg-type]
    return metric


def _duration_seconds(runtime: Runtime) -> ColumnElement[float]:
    if runtime.engine.dialect.name == "sqlite":
        days = func.julianday(SyncRun.completed_at) - func.julianday(SyncRun.started_at)
        return cast(days * 86400.0, Float)
    return cast(func.extract("epoch", SyncRun.completed_at - SyncRun.started_at), Float)


def render(runtime: Runtime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunsCollector(runtime))
    return generate_latest(registry)
