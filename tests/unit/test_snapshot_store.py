"""The engine-side snapshot file: acknowledgements logged per batch and folded into the
unindexed snapshot, a crashed run's log folded by the next one, and files of the
earlier (indexed, text-hash) shape upgraded without a resend."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from reflow.engine import snapshot
from reflow.engine.snapshot import HASH, KEY, SnapshotStore


def _keys(*keys: str) -> pa.Array:
    return pa.array(list(keys), pa.string())


def _hashes(*hashes: int) -> pa.Array:
    return pa.array(list(hashes), pa.uint64())


def test_acknowledgements_are_logged_then_folded_on_close(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    store = SnapshotStore(path)
    store.commit_delivered(_keys("1", "2", "3"), _hashes(11, 12, 13))
    assert store.delivered() == {"1": 11, "2": 12, "3": 13}
    store.close()

    again = SnapshotStore(path)
    assert again.con.execute("SELECT count(*) FROM log").fetchall() == [(0,)]
    again.commit_delivered(_keys("2"), _hashes(22))  # a changed row replaces its hash
    again.commit_removed(_keys("3"))
    assert again.delivered() == {"1": 11, "2": 22}
    again.close()

    last = SnapshotStore(path)
    rows = last.con.execute("SELECT key, hash FROM snapshot ORDER BY key").fetchall()
    assert rows == [("1", 11), ("2", 22)]  # one row per key
    last.close()


def test_a_crashed_runs_log_is_folded_by_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    store = SnapshotStore(path)
    store.commit_delivered(_keys("1", "2"), _hashes(11, 12))
    store.close()
    crashed = SnapshotStore(path)
    crashed.commit_delivered(_keys("2", "3"), _hashes(22, 33))
    crashed.commit_removed(_keys("1"))
    # killed: its connection ends without close(), so nothing is folded
    crashed._writer.close()
    crashed.con.close()

    raw = duckdb.connect(str(path))
    assert raw.execute("SELECT count(*) FROM log").fetchall() == [(3,)]
    raw.close()
    following = SnapshotStore(path)
    assert following.modified
    assert following.con.execute("SELECT count(*) FROM log").fetchall() == [(0,)]
    assert following.delivered() == {"2": 22, "3": 33}
    rows = following.con.execute("SELECT key, hash FROM snapshot ORDER BY key").fetchall()
    following.close()
    assert rows == [("2", 22), ("3", 33)]


def test_a_snapshot_of_the_earlier_shape_keeps_its_hashes(tmp_path: Path) -> None:
    """Before: ``key VARCHAR PRIMARY KEY, hash VARCHAR`` (DuckDB's hash as text, or md5
    hex of older versions). The DuckDB hashes keep their value, so unchanged rows are
    not sent again; an md5 hash matches nothing, so its row is sent once more."""
    path = tmp_path / "old.duckdb"
    first = SnapshotStore(path)
    first.stage(pa.table({"id": [1, 2], "v": ["a", "b"]}), "id")
    first.classify(full=True)
    reader = first.batches("changed", 10)
    hashes = {b.column(KEY)[i].as_py(): b.column(HASH)[i].as_py()
              for b in reader for i in range(b.num_rows)}
    first.close()
    path.unlink()
    old = duckdb.connect(str(path))
    old.execute("CREATE TABLE snapshot (key VARCHAR PRIMARY KEY, hash VARCHAR NOT NULL)")
    old.execute("CREATE TABLE meta (k VARCHAR PRIMARY KEY, v VARCHAR)")
    old.execute("INSERT INTO snapshot VALUES (?, ?), (?, ?)",
                ["1", str(hashes["1"]), "2", "9e107d9d372bb6826bd81d3542a419d6"])
    old.close()

    store = SnapshotStore(path)
    assert store.modified  # checked back in upgraded, even by a run that sends nothing
    # the md5 row stays delivered (a mirror sync still deletes it), with no hash to match
    assert store.delivered() == {"1": hashes["1"], "2": None}
    store.stage(pa.table({"id": [1, 2], "v": ["a", "b"]}), "id")
    invalid, changed = store.classify(full=False)
    changed_keys = [k for (k,) in store.con.execute(f"SELECT {KEY} FROM changed").fetchall()]
    store.close()
    assert (invalid, changed, changed_keys) == (0, 1, ["2"])


def test_a_statement_out_of_memory_is_retried_with_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """DuckDB's limit is sized to the stage's width; a model that still needs more gets
    it (twice, and again), never a failed run: a statement is retried, and so is a
    stream that runs out before its first batch."""
    monkeypatch.setattr(snapshot, "OPEN_MEMORY_MB", 4)
    monkeypatch.setattr(snapshot, "BASE_MEMORY_MB", 4)
    monkeypatch.setattr(snapshot, "MEMORY_MB_PER_COLUMN", 0)
    store = SnapshotStore(tmp_path / "s.duckdb")
    rows = 200_000
    ids = pa.array(range(rows), pa.int64())
    text = pc.binary_join_element_wise(pc.cast(ids, pa.string()), pa.scalar("x" * 40), "-")
    with caplog.at_level("WARNING", logger="reflow.engine.snapshot"):
        store.stage(pa.table({"id": ids, **{f"c{i}": text for i in range(20)}}), "id")
        assert store.classify(full=True) == (0, rows)
        assert "ran out of its 4 MB; retrying with 8 MB" in caplog.text
        caplog.clear()
        store.con.execute("SET memory_limit = '4MB'")  # as if staging had needed little
        store.memory_mb = 4
        assert sum(b.num_rows for b in store.batches("changed", 50_000)) == rows
    store.close()
    assert "ran out of its 4 MB reading changed; retrying with 8 MB" in caplog.text


def test_acknowledgements_out_of_memory_are_retried_with_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The log's insert runs on the acknowledgement thread while rows stream out under
    the streaming limit; one that runs out of memory is retried with twice the limit,
    never a failed run."""
    monkeypatch.setattr(snapshot, "OPEN_MEMORY_MB", 1)
    store = SnapshotStore(tmp_path / "s.duckdb")
    rows = 300_000
    keys = pc.binary_join_element_wise(
        pc.cast(pa.array(range(rows), pa.int64()), pa.string()), pa.scalar("k" * 60), "-")
    with caplog.at_level("WARNING", logger="reflow.engine.snapshot"):
        store.commit_delivered(keys, pa.array(range(rows), pa.uint64()))
    assert "ran out of its 1 MB; retrying with 2 MB" in caplog.text
    assert store.con.execute("SELECT count(*) FROM log").fetchall() == [(rows,)]
    store.close()
