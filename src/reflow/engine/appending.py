"""Append syncs: which staged rows a run sends.

* By key (default): every new or changed row is sent as a new record.
* By high-water mark (``high_water_mark_attribute``, a timestamp column): a run sends
  the rows with previous mark <= ts < new mark, where the new mark is the column's
  maximum now, so rows at exactly the maximum wait for the next run (as Census does).
  Rows below the previous mark that were never acknowledged (rejected, or a run that
  crashed) are sent too, so nothing is lost.
* ``historical_sync_operation`` decides the first run: ``backfill_all_records``
  (default) sends the current rows; ``skip_current_records`` records them as sent
  without sending them.

The mark lives in the sync's snapshot store and advances only when a run completes.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from reflow.engine.snapshot import HASH, KEY, SnapshotStore

if TYPE_CHECKING:
    from reflow.engine.warehouse_diff import WarehouseDiff

HWM = "__reflow_hwm"
_MARK, _NEXT_MARK, _STARTED = "hwm", "hwm_next", "append_started"


def hwm_attribute(operation: str, settings: dict[str, Any]) -> str | None:
    if operation != "append":
        return None
    return settings.get("high_water_mark_attribute") or None


def reset(store: SnapshotStore | WarehouseDiff) -> None:
    # Called on every new target, whichever store the run diffs in; only meta is touched.
    for key in (_MARK, _NEXT_MARK, _STARTED):
        store.set_meta(key, "")


def select(store: SnapshotStore, settings: dict[str, Any]) -> int:
    """Replace the ``changed`` view with what this append run sends; returns its size."""
    first = not store.meta(_STARTED)
    skip = first and settings.get("historical_sync_operation") == "skip_current_records"
    if settings.get("high_water_mark_attribute"):
        _by_high_water_mark(store)
    if skip:
        _record_without_sending(store)
    return int(store.con.execute("SELECT count(*) FROM changed").fetchall()[0][0])


def _by_high_water_mark(store: SnapshotStore) -> None:
    rows = store.con.execute(f"SELECT max({HWM}) FROM stage WHERE {KEY} IS NOT NULL").fetchall()
    new_mark = rows[0][0]
    store.set_meta(_NEXT_MARK, _dump(new_mark) if new_mark is not None else "")
    previous = _load(store.meta(_MARK))
    recent = f" OR s.{HWM} >= $prev" if previous is not None else ""
    window = f"s.{HWM} < $new AND (s.{KEY} NOT IN (SELECT key FROM snapshot){recent})"
    params: dict[str, Any] = {"new": new_mark}
    if previous is not None:
        params["prev"] = previous
    store.con.execute(
        f"CREATE OR REPLACE TABLE appended AS SELECT s.* FROM stage s"
        f" WHERE s.{KEY} IS NOT NULL AND s.{KEY} NOT IN (SELECT {KEY} FROM dupes) AND {window}",
        params,
    )
    store.con.execute("CREATE OR REPLACE VIEW changed AS SELECT * FROM appended")


def _record_without_sending(store: SnapshotStore) -> None:
    for batch in store.batches("changed", 50_000):
        store.commit_delivered(batch.column(KEY), batch.column(HASH))
    store.con.execute("CREATE OR REPLACE VIEW changed AS SELECT * FROM stage WHERE FALSE")


def finish(store: SnapshotStore) -> None:
    """The run completed: the first run is over and the mark advances."""
    store.set_meta(_STARTED, "1")
    following = store.meta(_NEXT_MARK)
    if following:
        store.set_meta(_MARK, following)
        store.set_meta(_NEXT_MARK, "")


def _dump(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return json.dumps({"t": type(value).__name__, "v": value.isoformat()})
    return json.dumps({"t": "plain", "v": value})


def _load(raw: str | None) -> Any:
    if not raw:
        return None
    data = json.loads(raw)
    if data["t"] == "datetime":
        return dt.datetime.fromisoformat(data["v"])
    if data["t"] == "date":
        return dt.date.fromisoformat(data["v"])
    return data["v"]
