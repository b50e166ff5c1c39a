"""Records exports kept in run storage (any API process serves them) and the storage
usage at /metrics measured at most every ``USAGE_EVERY`` seconds, on a real S3 API
(moto_server on loopback)."""

from __future__ import annotations

import datetime as dt
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import obstore
import pyarrow.parquet as pq
import pytest

from reflow.jobs import metrics
from reflow.storage import LocalStorage, RunFiles, S3Storage
from tests.api.conftest import start_server, stop_server
from tests.integration.test_storage import AWS, _bucket, _sqlite_sync, _trigger
from tests.support.emulators import moto_s3_endpoint


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_endpoint() as endpoint:
        yield endpoint


def _s3(endpoint: str) -> object:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def test_an_export_is_kept_in_object_storage_and_served_from_it(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reflow.config import Settings
    from reflow.jobs.retention import prune
    from reflow.runtime import Runtime

    home = Path(tempfile.mkdtemp(prefix="reflow-export-"))
    bucket = _bucket(s3_endpoint)
    env = {**AWS, "AWS_ENDPOINT_URL": s3_endpoint, "REFLOW_STORAGE_URL": f"s3://{bucket}/r"}
    server = start_server("sqlite", home, env)
    try:
        with server.client() as api:
            sync_id, _ = _sqlite_sync(api, home)
            run = _trigger(api, sync_id)
            urls = api.get(f"/sync_runs/{run['id']}/records_export").json()["urls"]
            assert len(urls) == 1, urls
            token = urlsplit(urls[0]).path.split("/")[-2]
            prefix = f"r/runs/{run['id']}/export/{token}/"
            listed = _s3(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
            assert {o["Key"][len(prefix):] for o in listed["Contents"]} == {
                "expires", "succeeded.parquet"}
            local = home / "runs" / str(run["id"]) / "export" / token
            assert not list(local.glob("*"))  # nothing left on this API machine's disk

            got = httpx.get(urls[0], timeout=30)  # the signed URL alone, fetched back
            assert got.status_code == 200, got.text
            table = pq.read_table(io.BytesIO(got.content))
            assert table.num_rows == 20
            assert sorted(table.column("identifier").to_pylist()) == sorted(
                str(i) for i in range(20))

        runtime = Runtime.from_settings(Settings(home=home, storage_url=env["REFLOW_STORAGE_URL"]))
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)  # past the export's expiry
        for key, value in env.items():  # the job reads the AWS variables as boto3 does
            monkeypatch.setenv(key, value)
        prune(runtime, later)
        left = _s3(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix)  # type: ignore[attr-defined]
        assert left.get("KeyCount", 0) == 0
        kept = _s3(s3_endpoint).list_objects_v2(  # type: ignore[attr-defined]
            Bucket=bucket, Prefix=f"r/runs/{run['id']}/succeeded/")
        assert kept["KeyCount"] == 1  # the record log stays for its retention window
    finally:
        stop_server(server)


def test_storage_usage_is_listed_at_most_once_per_interval(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    for key, value in {**AWS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    bucket = _bucket(s3_endpoint)
    snapshots = S3Storage(f"s3://{bucket}/u/snapshots", tmp_path / "work")
    run_files = RunFiles(tmp_path, S3Storage(f"s3://{bucket}/u/runs", tmp_path / "work"))
    runtime = SimpleNamespace(snapshots=snapshots, run_files=run_files)
    listings: list[str] = []
    listed = obstore.list

    def counted(*args: Any, **kwargs: Any) -> Any:
        listings.append("list")
        return listed(*args, **kwargs)

    monkeypatch.setattr(obstore, "list", counted)
    monkeypatch.setattr(metrics, "_usage", metrics._UsageCache())

    def scrape() -> dict[str, float]:
        found = {}
        for family in metrics._storage(runtime):  # type: ignore[arg-type]
            for sample in family.samples:
                found[f"{sample.name}:{sample.labels['kind']}"] = sample.value
        return found

    path = snapshots.working_path("sync_1.duckdb")
    path.write_bytes(b"x" * 1000)
    snapshots.checkin("sync_1.duckdb", path)
    first = scrape()
    assert first["reflow_storage_bytes:snapshots"] == 1000
    assert first["reflow_storage_objects:record_logs"] == 0
    assert len(listings) == 2  # one listing per store

    path = snapshots.working_path("sync_2.duckdb")
    path.write_bytes(b"y" * 500)
    snapshots.checkin("sync_2.duckdb", path)
    assert scrape() == first  # within the interval: the last measure, no listing
    assert len(listings) == 2

    monkeypatch.setattr(metrics, "USAGE_EVERY", 0.0)
    again = scrape()
    assert again["reflow_storage_bytes:snapshots"] == 1500
    assert again["reflow_storage_objects:snapshots"] == 2
    assert len(listings) == 4


def test_local_usage_is_cached_the_same_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    snapshots = LocalStorage(tmp_path / "snapshots")
    runtime = SimpleNamespace(snapshots=snapshots, run_files=RunFiles(tmp_path, None))
    monkeypatch.setattr(metrics, "_usage", metrics._UsageCache())
    snapshots.working_path("a").write_bytes(b"12345")
    sizes = [list(metrics._storage(runtime))[0].samples[0].value]  # type: ignore[arg-type]
    snapshots.working_path("b").write_bytes(b"123")
    sizes.append(list(metrics._storage(runtime))[0].samples[0].value)  # type: ignore[arg-type]
    monkeypatch.setattr(metrics, "USAGE_EVERY", 0.0)
    sizes.append(list(metrics._storage(runtime))[0].samples[0].value)  # type: ignore[arg-type]
    assert sizes == [5, 5, 8]


def test_a_run_that_changed_nothing_does_not_upload_its_snapshot_again(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    import pyarrow as pa

    from reflow.engine.warehouse_diff import open_engine_side

    for key, value in {**AWS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    storage = S3Storage(f"s3://{_bucket(s3_endpoint)}/snapshots", tmp_path / "work")
    puts: list[str] = []
    put = obstore.put

    def counted_put(*args: Any, **kwargs: Any) -> Any:
        puts.append("put")
        return put(*args, **kwargs)

    monkeypatch.setattr(obstore, "put", counted_put)

    first = open_engine_side(storage, "sync_1.duckdb", sync_id=1)
    first.set_meta("mappings", "m1")
    first.commit_delivered(pa.array(["1", "2"]), pa.array([11, 12], pa.uint64()))
    first.close()
    assert len(puts) == 1

    again = open_engine_side(storage, "sync_1.duckdb", sync_id=1)
    again.set_meta("mappings", "m1")  # what every run does: the same value
    assert again.meta("mappings") == "m1"
    again.close()
    assert len(puts) == 1  # nothing changed: not uploaded again
    assert not list((tmp_path / "work").iterdir())  # its working copy is gone

    changed = open_engine_side(storage, "sync_1.duckdb", sync_id=1)
    changed.commit_removed(pa.array(["2"]))
    changed.close()
    assert len(puts) == 2
    last = open_engine_side(storage, "sync_1.duckdb", sync_id=1)
    assert list(last.delivered()) == ["1"]
    last.close()
