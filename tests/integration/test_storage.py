"""The storage interface (storage.py) on a local directory and on a real S3 API (moto_server
on loopback), and what a run does when its store is unreadable or unreachable."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from reflow import storage as storage_module
from reflow.storage import LocalStorage, S3Storage, Storage, StorageError
from tests.api.conftest import start_server, stop_server, wait_for_run
from tests.conftest import unique_name
from tests.support.emulators import free_port, moto_s3_endpoint

AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> str:
    for key, value in {**AWS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    return s3_endpoint


def _bucket(endpoint: str) -> str:
    name = unique_name("snap").replace("_", "-")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    endpoint = request.getfixturevalue("aws_env")
    return S3Storage(f"s3://{_bucket(endpoint)}/team/a", tmp_path / "work")


def test_objects_round_trip_through_checkout_and_checkin(storage: Storage) -> None:
    assert storage.checkout("sync_1.duckdb") is None
    path = storage.working_path("sync_1.duckdb")
    path.write_bytes(b"first")
    storage.checkin("sync_1.duckdb", path)
    copy = storage.checkout("sync_1.duckdb")
    assert copy is not None and copy.read_bytes() == b"first"
    copy.write_bytes(b"second, longer")
    storage.checkin("sync_1.duckdb", copy)
    again = storage.checkout("sync_1.duckdb")
    assert again is not None and again.read_bytes() == b"second, longer"
    assert list(storage.keys()) == ["sync_1.duckdb"]
    assert storage.usage().objects == 1 and storage.usage().bytes == len(b"second, longer")
    storage.check_writable()
    assert list(storage.keys()) == ["sync_1.duckdb"]  # the probe leaves nothing behind
    assert storage.delete_prefix("sync_") == 1
    assert storage.checkout("sync_1.duckdb") is None


def test_a_large_object_goes_up_in_parts_and_a_small_one_in_one_put(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_module, "PART_BYTES", 5 * 2**20)  # S3's smallest part
    bucket = _bucket(aws_env)
    store = S3Storage(f"s3://{bucket}/p", tmp_path / "work")
    large, small = tmp_path / "large", tmp_path / "small"
    large.write_bytes(os.urandom(11 * 2**20))
    small.write_bytes(os.urandom(5 * 2**20))
    store.upload(large, "large")
    store.upload(small, "small")
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    # A multipart upload's ETag ends with its number of parts.
    assert s3.head_object(Bucket=bucket, Key="p/large")["ETag"].endswith('-3"')
    assert "-" not in s3.head_object(Bucket=bucket, Key="p/small")["ETag"]
    for name, original in (("large", large), ("small", small)):
        store.download(name, tmp_path / f"{name}.copy")
        assert (tmp_path / f"{name}.copy").read_bytes() == original.read_bytes()


def test_an_unreachable_or_missing_store_is_an_error_naming_its_url(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing_bucket = S3Storage("s3://no-such-bucket/x", tmp_path)
    with pytest.raises(StorageError, match="s3://no-such-bucket/x"):
        missing_bucket.check_writable()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    closed = S3Storage("s3://bucket/prefix", tmp_path)
    with pytest.raises(StorageError, match="s3://bucket/prefix"):
        closed.checkout("sync_1.duckdb")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with pytest.raises(StorageError, match="not writable"):
        LocalStorage(blocked / "snapshots").check_writable()


def test_serve_and_worker_refuse_a_storage_url_they_cannot_write(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "REFLOW_HOME": str(tmp_path), **AWS,
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
           "REFLOW_STORAGE_URL": "s3://unreachable-bucket/reflow"}
    reflow = [sys.executable, "-m", "reflow.cli"]
    assert subprocess.run([*reflow, "init"], env=env, capture_output=True).returncode == 0
    for command in (["serve", "--port", str(free_port())], ["worker"]):
        extra = {"REFLOW_EXECUTOR": "celery"} if command == ["worker"] else {}
        done = subprocess.run([*reflow, *command], env={**env, **extra}, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert "s3://unreachable-bucket/reflow" in done.stderr, done.stderr


def _sqlite_sync(api: object, home: Path) -> tuple[int, Path]:
    warehouse, crm = home / "warehouse.sqlite", home / "crm.sqlite"
    with sqlite3.connect(warehouse) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO people VALUES (?, ?)", [(i, f"p{i}") for i in range(20)])
    with sqlite3.connect(crm) as conn:
        conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
    source = api.post("/sources", json={"connection": {  # type: ignore[attr-defined]
        "type": "sqlite", "name": "W", "credentials": {"path": str(warehouse)}}}).json()
    dest = api.post("/destinations", json={"service_connection": {  # type: ignore[attr-defined]
        "type": "sqlite", "name": "C", "credentials": {"path": str(crm)}}}).json()
    model = api.post(f"/sources/{source['data']['id']}/models", json={  # type: ignore[attr-defined]
        "name": "people", "query": "SELECT * FROM people"}).json()["data"]["id"]
    sync = api.post("/syncs", json={  # type: ignore[attr-defined]
        "operation": "upsert",
        "source_attributes": {"connection_id": source["data"]["id"],
                              "object": {"type": "model", "id": model}},
        "destination_attributes": {"connection_id": dest["data"]["id"], "object": "people"},
        "mappings": [{"from": {"type": "column", "data": "id"}, "to": "id",
                      "is_primary_identifier": True},
                     {"from": {"type": "column", "data": "name"}, "to": "name"}]})
    assert sync.status_code == 200, sync.text
    return int(sync.json()["data"]["sync_id"]), crm


def _trigger(api: object, sync_id: int) -> dict[str, object]:
    response = api.post(f"/syncs/{sync_id}/trigger")  # type: ignore[attr-defined]
    return wait_for_run(api, int(response.json()["data"]["sync_run_id"]))  # type: ignore[arg-type]


def test_an_unreadable_snapshot_is_said_and_every_record_resent() -> None:
    home = Path(tempfile.mkdtemp(prefix="reflow-storage-"))
    server = start_server("sqlite", home)
    try:
        with server.client() as api:
            sync_id, _ = _sqlite_sync(api, home)
            assert _trigger(api, sync_id)["records_processed"] == 20
            snapshot = home / "snapshots" / f"sync_{sync_id}.duckdb"
            assert snapshot.exists()
            snapshot.write_bytes(b"this is not a DuckDB file" * 100)
            run = _trigger(api, sync_id)
            assert run["status"] == "completed", run
            assert run["records_processed"] == 20
            assert "could not be read" in str(run["error_message"])
            again = _trigger(api, sync_id)
            assert again["records_processed"] == 0 and again["error_message"] is None
    finally:
        stop_server(server)


def test_a_store_that_stops_answering_fails_the_run_before_any_record_is_sent() -> None:
    home = Path(tempfile.mkdtemp(prefix="reflow-storage-"))
    with moto_s3_endpoint() as endpoint:
        bucket = _bucket(endpoint)
        server = start_server("sqlite", home, {
            **AWS, "AWS_ENDPOINT_URL": endpoint, "REFLOW_STORAGE_URL": f"s3://{bucket}/r"})
        try:
            with server.client() as api:
                sync_id, crm = _sqlite_sync(api, home)
                first = _trigger(api, sync_id)
                assert first["records_processed"] == 20
                assert not (home / "snapshots").exists()  # nothing kept on this disk
                parts = home / "runs" / str(first["id"]) / "succeeded"
                assert not list(parts.glob("*.parquet"))  # shared, then dropped locally
                listed = api.get(f"/sync_runs/{first['id']}/records",
                                 params={"status": "succeeded", "per_page": 100}).json()
                assert len(listed["data"]) == 20  # fetched back from the store
                with sqlite3.connect(crm) as conn:
                    conn.execute("DELETE FROM people")
        except BaseException:
            stop_server(server)
            raise
    # moto is gone now: the store does not answer
    try:
        with server.client() as api:
            run = _trigger(api, sync_id)
            assert run["status"] == "failed", run
            assert f"s3://{bucket}/r" in str(run["error_message"]), run
        with sqlite3.connect(crm) as conn:
            assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 0
    finally:
        stop_server(server)


def test_retention_and_deleted_syncs_leave_no_files_behind() -> None:
    import datetime as dt

    from reflow.config import Settings
    from reflow.jobs.retention import prune
    from reflow.runtime import Runtime

    home = Path(tempfile.mkdtemp(prefix="reflow-storage-"))
    server = start_server("sqlite", home)
    try:
        with server.client() as api:
            kept_sync, _ = _sqlite_sync(api, home)
            kept_run = _trigger(api, kept_sync)
            assert (home / "runs" / str(kept_run["id"]) / "succeeded").is_dir()
            metrics = api.get(server.base_url + "/metrics").text
            assert 'reflow_storage_bytes{kind="snapshots"}' in metrics
            assert 'reflow_storage_objects{kind="record_logs"} 1.0' in metrics

            other = home / "other"
            other.mkdir()
            gone_sync, _ = _sqlite_sync(api, other)
            gone_run = _trigger(api, gone_sync)
            assert api.delete(f"/syncs/{gone_sync}").status_code == 200
            assert not (home / "snapshots" / f"sync_{gone_sync}.duckdb").exists()
            assert not (home / "runs" / str(gone_run["id"])).exists()
            assert (home / "runs" / str(kept_run["id"])).exists()

        runtime = Runtime.from_settings(Settings(home=home))
        now = dt.datetime.now(dt.UTC)
        assert prune(runtime, now) == 0
        assert (home / "runs" / str(kept_run["id"])).exists()
        assert prune(runtime, now + dt.timedelta(days=15)) == 1
        assert not (home / "runs" / str(kept_run["id"])).exists()
    finally:
        stop_server(server)
