"""File destinations against a real directory and a real S3 API (moto_server on loopback)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from reflow.connectors.base import DestinationConnector, WriteContext
from reflow.connectors.destinations.files import (
    FileSyncOptions,
    LocalFilesDestination,
    S3Destination,
)
from reflow.connectors.errors import ObjectNotFound, TerminalError
from reflow.connectors.registry import destination_types
from reflow.connectors.testing import SEED_ROWS, DestinationConformance, seed_batch

FORMATS = {"csv": ".csv", "jsonl": ".jsonl", "ndjson": ".ndjson", "json": ".json",
           "parquet": ".parquet", "tsv": ".tsv"}
BUCKET = "reflow-test"


def parse_file(name: str, data: bytes) -> list[dict[str, Any]]:
    suffix = Path(name).suffix
    if suffix in (".csv", ".tsv"):
        options = pacsv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False)
        parse = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",",
                                   newlines_in_values=True)
        return pacsv.read_csv(io.BytesIO(data), parse_options=parse,
                              convert_options=options).to_pylist()
    if suffix == ".parquet":
        return pq.read_table(io.BytesIO(data)).to_pylist()
    if suffix == ".json":
        return json.loads(data)
    return [json.loads(line) for line in data.decode().splitlines() if line]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = _free_port()
    server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not come up on port {port}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def s3_credentials(endpoint: str, bucket: str = BUCKET) -> dict[str, Any]:
    return {"bucket": bucket, "region": "us-east-1", "access_key_id": "testing",
            "secret_access_key": "testing", "endpoint_url": endpoint}


@pytest.fixture(scope="session")
def s3_client(moto_endpoint: str) -> Any:
    import boto3

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    return client


def s3_files(client: Any, prefix: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for o in listed}


def local_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def rows_of(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [row for name, data in sorted(files.items()) for row in parse_file(name, data)]


def local_destination(path: Path) -> LocalFilesDestination:
    return LocalFilesDestination(LocalFilesDestination.config_model.model_validate(
        {"directory": str(path)}))


def s3_destination(endpoint: str, bucket: str = BUCKET) -> S3Destination:
    return S3Destination(S3Destination.config_model.model_validate(
        s3_credentials(endpoint, bucket)))


@pytest.fixture(params=sorted(FORMATS))
def suffix(request: pytest.FixtureRequest) -> str:
    return FORMATS[request.param]


class TestLocalFilesConformance(DestinationConformance):
    merges = False

    @pytest.fixture
    def destination(self, tmp_path: Path) -> LocalFilesDestination:
        return local_destination(tmp_path)

    @pytest.fixture
    def bad_destination(self, tmp_path: Path) -> LocalFilesDestination:
        return local_destination(tmp_path / "missing")

    @pytest.fixture
    def object_name(self, suffix: str) -> str:
        return "exports/{{ sync_id }}/{{ run_id }}" + suffix

    @pytest.fixture
    def read_back(self, tmp_path: Path) -> Callable[[], list[dict[str, Any]]]:
        return lambda: rows_of(local_files(tmp_path))


class TestS3Conformance(DestinationConformance):
    merges = False

    @pytest.fixture
    def prefix(self, s3_client: Any) -> str:
        return uuid.uuid4().hex

    @pytest.fixture
    def destination(self, moto_endpoint: str, s3_client: Any) -> S3Destination:
        return s3_destination(moto_endpoint)

    @pytest.fixture
    def bad_destination(self, moto_endpoint: str) -> S3Destination:
        return s3_destination(moto_endpoint, bucket="no-such-bucket-x")

    @pytest.fixture
    def object_name(self, prefix: str, suffix: str) -> str:
        return prefix + "/{{ sync_id }}/{{ run_id }}" + suffix

    @pytest.fixture
    def read_back(self, s3_client: Any, prefix: str) -> Callable[[], list[dict[str, Any]]]:
        return lambda: rows_of(s3_files(s3_client, prefix))


def _ctx(object_name: str, run_id: int = 7, options: dict[str, Any] | None = None) -> WriteContext:
    return WriteContext(sync_id=3, run_id=run_id, object_name=object_name, key_field="id",
                        fields=("id", "name", "amount", "active"), options=options or {})


def _run(destination: DestinationConnector, object_name: str, batches: list[list[dict]],
         options: dict[str, Any] | None = None, **kw: Any) -> None:
    writer = destination.open_writer(_ctx(object_name, options=options), **kw)
    for rows in batches:
        assert writer.write(seed_batch(rows), "append").rejected == []
    writer.close()


def test_one_file_per_run_across_batches_and_nothing_before_close(tmp_path: Path) -> None:
    writer = local_destination(tmp_path).open_writer(_ctx("out/{{ run_id }}.csv"))
    writer.write(seed_batch(SEED_ROWS[:3]), "upsert")
    writer.write(seed_batch(SEED_ROWS[3:]), "upsert")
    assert not (tmp_path / "out" / "7.csv").exists(), "published only on close"
    writer.close()
    files = local_files(tmp_path)
    assert list(files) == ["out/7.csv"]
    assert [r["id"] for r in rows_of(files)] == [r["id"] for r in SEED_ROWS]


def test_batch_in_template_writes_one_file_per_batch(tmp_path: Path) -> None:
    _run(local_destination(tmp_path), "b/{{ run_id }}-{{ batch }}.jsonl",
         [SEED_ROWS[:2], SEED_ROWS[2:]])
    files = local_files(tmp_path)
    assert sorted(files) == ["b/7-1.jsonl", "b/7-2.jsonl"]
    assert [r["id"] for r in parse_file("x.jsonl", files["b/7-2.jsonl"])] == [3, 4, 5, 6]


def test_timestamp_and_strftime_codes_use_the_run_start(tmp_path: Path) -> None:
    at = datetime(2025, 3, 4, 10, 0, 2, tzinfo=UTC)
    _run(local_destination(tmp_path), "%Y/%m/{{ sync_id }}_{{ timestamp }}.parquet",
         [SEED_ROWS], now=at)
    assert list(local_files(tmp_path)) == ["2025/03/3_20250304T100002Z.parquet"]


def test_mirror_replaces_the_file_and_an_empty_run_empties_it(tmp_path: Path) -> None:
    destination = local_destination(tmp_path)
    _run(destination, "mirror.csv", [SEED_ROWS])
    _run(destination, "mirror.csv", [SEED_ROWS[:1]])
    assert [r["id"] for r in rows_of(local_files(tmp_path))] == [1]
    _run(destination, "mirror.csv", [])
    data = local_files(tmp_path)["mirror.csv"]
    assert data.decode().splitlines() == ['"id","name","amount","active"']


def test_delete_batches_are_accepted_and_not_written(tmp_path: Path) -> None:
    writer = local_destination(tmp_path).open_writer(_ctx("m.jsonl"))
    writer.write(seed_batch(SEED_ROWS[:2]), "upsert")
    assert writer.write(seed_batch(SEED_ROWS[2:]), "delete").rejected == []
    writer.close()
    assert [r["id"] for r in rows_of(local_files(tmp_path))] == [1, 2]


def test_abort_leaves_no_file(tmp_path: Path) -> None:
    writer = local_destination(tmp_path).open_writer(_ctx("a.csv"))
    writer.write(seed_batch(), "append")
    writer.abort()
    assert local_files(tmp_path) == {}


def test_path_cannot_escape_the_directory(tmp_path: Path) -> None:
    writer = local_destination(tmp_path / "d").open_writer(_ctx("../../etc/x.csv"))
    with pytest.raises(TerminalError):
        writer.write(seed_batch(), "append")


def test_unparsable_path_template_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        local_destination(tmp_path).get_object("x/{{ run_id .csv")


@pytest.mark.parametrize("name", ["report.xlsx", "no_extension"])
def test_another_extension_needs_a_file_format(tmp_path: Path, name: str) -> None:
    destination = local_destination(tmp_path)
    assert destination.get_object(name).full_name == name
    with pytest.raises(ValidationError, match="file_format"):
        FileSyncOptions.model_validate({}, context={"object_name": name})
    with pytest.raises(TerminalError, match="advanced_configuration.file_format"):
        destination.open_writer(_ctx(name))
    _run(destination, name, [SEED_ROWS[:2]], options={"file_format": "ndjson"})
    assert [r["id"] for r in parse_file("x.ndjson", local_files(tmp_path)[name])] == [1, 2]


def test_csv_delimiter_and_header_are_sync_options(tmp_path: Path) -> None:
    _run(local_destination(tmp_path), "p.txt", [SEED_ROWS[:1]],
         options={"file_format": "csv", "csv_delimiter": "|", "include_header": False})
    line = local_files(tmp_path)["p.txt"].decode().splitlines()
    assert len(line) == 1 and line[0].startswith("1|")


def test_file_format_overrides_the_extension(tmp_path: Path) -> None:
    _run(local_destination(tmp_path), "t.csv", [SEED_ROWS[:1]], options={"file_format": "tsv"})
    assert local_files(tmp_path)["t.csv"].decode().splitlines()[0] == (
        '"id"\t"name"\t"amount"\t"active"'
    )


@pytest.mark.parametrize(
    ("options", "field_name"),
    [({"file_format": "xlsx"}, "file_format"), ({"csv_delimiter": ";;"}, "csv_delimiter"),
     ({"csv_delimiter": "\n"}, "csv_delimiter"),
     ({"pgp_public_key": "-----BEGIN PGP PUBLIC KEY BLOCK-----"}, "pgp_public_key")],
)
def test_bad_file_options_name_the_field(options: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ValidationError) as info:
        FileSyncOptions.model_validate(options, context={"object_name": "x.csv"})
    assert info.value.errors()[0]["loc"] == (field_name,)


def test_jsonl_is_ndjson_and_unknown_keys_are_kept() -> None:
    options = FileSyncOptions.model_validate({"file_format": "jsonl", "batch_size": 10})
    assert options.model_dump(exclude_unset=True) == {"file_format": "ndjson", "batch_size": 10}


def test_any_template_is_an_object_with_custom_fields(tmp_path: Path) -> None:
    destination = local_destination(tmp_path)
    obj = destination.get_object("whatever/{{ run_id }}.parquet")
    assert obj.allow_custom_fields and obj.fields == ()
    assert obj.supported_operations == ("append", "upsert", "mirror")
    listed = destination.list_objects()
    assert len(listed) == 1 and listed[0].allow_custom_fields


def test_write_access_fails_where_files_cannot_be_created() -> None:
    # /proc is a directory nobody, not even root, can create files in.
    steps = local_destination(Path("/proc")).test_connection()
    assert [(s.step, s.status) for s in steps] == [
        ("Verify connectivity", "success"), ("Verify write access", "failed")]
    assert steps[1].message


def test_s3_probe_object_is_deleted(moto_endpoint: str, s3_client: Any) -> None:
    before = set(s3_files(s3_client, ".reflow-probe"))
    steps = s3_destination(moto_endpoint).test_connection()
    assert [(s.step, s.status) for s in steps] == [
        ("Verify connectivity", "success"), ("Verify write access", "success")]
    assert set(s3_files(s3_client, ".reflow-probe")) == before


def test_s3_large_file_goes_through_multipart(moto_endpoint: str, s3_client: Any) -> None:
    prefix = uuid.uuid4().hex
    big = [dict(r, id=i, name="x" * 2000) for i, r in enumerate(SEED_ROWS * 900)]
    _run(s3_destination(moto_endpoint), prefix + "/big.csv", [big[:2700], big[2700:]])
    files = s3_files(s3_client, prefix)
    assert len(files[prefix + "/big.csv"]) > 8 * 1024 * 1024  # above boto's multipart threshold
    assert len(rows_of(files)) == len(big)


def test_s3_missing_bucket_at_write_is_terminal(moto_endpoint: str) -> None:
    writer = s3_destination(moto_endpoint, "no-such-bucket-y").open_writer(_ctx("x.csv"))
    writer.write(seed_batch(), "append")
    with pytest.raises(TerminalError):
        writer.close()


def test_registered() -> None:
    types = destination_types()
    assert types["local_files"] is LocalFilesDestination
    assert types["s3"] is S3Destination
    assert "secret_access_key" not in s3_destination("http://x").config.connection_details()
