"""A run history chart drawn as SVG on the server: bars for records, a line for duration.

Only geometry is computed here; the template writes the ``<svg>``. No chart library and
no JavaScript, so the chart shows without scripts too.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflow.db.tables import SyncRun

WIDTH, HEIGHT, PAD = 960, 150, 18
MAX_SLOT = 40  # a few runs draw narrow bars from the left, not one wide block


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    run_id: int
    status: str
    records: int
    seconds: float


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    line: str  # polyline points of duration
    max_records: int
    max_seconds: float
    width: int = WIDTH
    height: int = HEIGHT


def _seconds(run: SyncRun) -> float:
    if run.started_at is None or run.completed_at is None:
        return 0.0
    return max(0.0, (run.completed_at - run.started_at).total_seconds())


def _records(run: SyncRun) -> int:
    return (run.records_processed or 0) + (run.source_record_invalids or 0)


def history(runs: list[SyncRun]) -> Chart | None:
    """``runs`` newest first (as listed); drawn oldest to newest, left to right."""
    ordered = list(reversed(runs))
    if not ordered:
        return None
    top_records = max(max(_records(r) for r in ordered), 1)
    top_seconds = max(max(_seconds(r) for r in ordered), 0.001)
    slot = min((WIDTH - 2 * PAD) / len(ordered), MAX_SLOT)
    usable = HEIGHT - 2 * PAD
    bars, points = [], []
    for i, run in enumerate(ordered):
        h = usable * _records(run) / top_records
        x = PAD + i * slot
        bars.append(Bar(round(x + slot * 0.15, 1), round(PAD + usable - h, 1),
                        round(slot * 0.7, 1), round(h, 1), run.id, run.status,
                        _records(run), round(_seconds(run), 2)))
        y = PAD + usable - usable * _seconds(run) / top_seconds
        points.append(f"{x + slot / 2:.1f},{y:.1f}")
    return Chart(bars, " ".join(points), top_records, round(top_seconds, 2))
