"""File destinations: a local directory (``local_files``) and Amazon S3 (``s3``).

The destination *object* is a path template, e.g. ``exports/{{ sync_id }}/{{ run_id }}.csv``,
rendered with Liquid (variables ``sync_id``, ``run_id``, ``batch``, ``timestamp``) and then
with Census's strftime-style codes (``%Y``, ``%m``, ``%d``, ``%H``...) at the run's start.
The format, CSV delimiter and header row are per sync (``FileSyncOptions``, reference
§5.4): ``advanced_configuration.file_format`` (``csv``, ``tsv``, ``json`` = one array,
``ndjson`` = one object per line, ``parquet``), ``csv_delimiter`` (``,``) and
``include_header`` (true). Without ``file_format`` the extension picks the format, as
before: ``.csv``, ``.tsv``, ``.json``, ``.jsonl`` / ``.ndjson`` or ``.parquet``; a path
with another extension needs ``file_format``. PGP encryption is not supported, and a sync
asking for it is refused rather than sent in the clear.

One file per run: the writer keeps the file open across batches and publishes it on
``close()`` (local: rename of a hidden temp file; S3: upload of a local temp file, which
boto3 turns into a multipart upload for large files), so a reader never sees half a file.
When the template uses ``batch`` (numbered from 1) each batch is its own file instead.

Operations are full-file exports; the engine decides which rows a run sends:

* ``append``: each run writes the rows it was given (new events) to the rendered path.
* ``upsert``: each run writes the records added or changed since the last run (the first
  run writes everything) — a delta file, as Census's "update or create" for files.
* ``mirror``: "replace": each run writes every current record; a path without ``run_id``
  or ``timestamp`` is overwritten atomically, so the file always mirrors the source.
  ``delete`` batches are accepted and not written: removed rows are simply absent from
  the new file.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal, Protocol
from urllib.parse import urlsplit

import pyarrow as pa
from liquid import Environment, StrictUndefined
from liquid.exceptions import LiquidError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from reflow.connectors.base import (
    Action,
    BatchWriter,
    ConnectorConfig,
    DestinationCapabilities,
    DestinationConnector,
    DestinationObject,
    TestStep,
    WriteContext,
    WriteResult,
    options_error,
    run_steps,
)
from reflow.connectors.errors import (
    BatchRejected,
    ObjectNotFound,
    TerminalError,
    TransientError,
)
from reflow.connectors.outbound import check_server

_OPERATIONS = ("append", "upsert", "mirror")
_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".json": "json",
    ".jsonl": "ndjson", ".ndjson": "ndjson", ".parquet": "parquet",
}
FileFormat = Literal["csv", "tsv", "json", "ndjson", "parquet"]
#: What ``list_objects`` offers: file systems have no objects to enumerate, the user
#: types a path; one example template gives pickers something valid to start from.
EXAMPLE_TEMPLATE = "reflow/{{ sync_id }}/{{ run_id }}.csv"
_ENV = Environment(undefined=StrictUndefined)


class LocalFilesConfig(ConnectorConfig):
    directory: str = Field(
        title="Directory",
        description="Absolute path of an existing directory the files are written under.",
    )

    def identifying_value(self) -> str | None:
        return self.directory


class S3Config(ConnectorConfig):
    bucket: str = Field(title="Bucket Name", description="S3 bucket the files are written to.")
    region: str = Field(title="AWS Region", description="Region of the bucket, e.g. us-east-1.")
    access_key_id: str = Field(title="Access Key ID", description="AWS access key id.")
    secret_access_key: SecretStr = Field(
        title="Secret Key", description="AWS secret access key of that key id."
    )
    endpoint_url: str | None = Field(
        default=None,
        title="Endpoint URL",
        description="S3-compatible endpoint to use instead of AWS (MinIO, moto...).",
    )

    def identifying_value(self) -> str | None:
        return self.bucket


# --- per-sync options -------------------------------------------------------------------


class FileSyncOptions(BaseModel):
    """A file sync's own settings, from its ``advanced_configuration`` (reference §5.4)."""

    model_config = ConfigDict(extra="allow")

    file_format: FileFormat | None = Field(
        default=None, validate_default=True, title="File format",
        description="csv, tsv, json (one array), ndjson (one object per line) or parquet; "
        "unset: from the path's extension (.csv, .tsv, .json, .jsonl/.ndjson, .parquet).",
    )
    csv_delimiter: str = Field(
        default=",", min_length=1, max_length=1, title="CSV delimiter",
        description="One character between CSV values, e.g. | (TSV always uses a tab).",
    )
    include_header: bool = Field(
        default=True, title="Include header row",
        description="CSV and TSV: write the column names as the first line.",
    )
    pgp_public_key: SkipJsonSchema[str | None] = Field(default=None, exclude=True)

    @field_validator("file_format", mode="before")
    @classmethod
    def _jsonl_is_ndjson(cls, value: Any) -> Any:
        if value == "":
            return None
        return "ndjson" if isinstance(value, str) and value.lower() == "jsonl" else value

    @field_validator("file_format")
    @classmethod
    def _known_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        path = (info.context or {}).get("object_name")
        if value is None and path is not None and not PathTemplate(path).format:
            raise ValueError(
                f"the path {path!r} does not end with one of {', '.join(sorted(_FORMATS))}; "
                "set file_format"
            )
        return value

    @field_validator("csv_delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if value in ('"', "\r", "\n"):
            raise ValueError("the delimiter cannot be a double quote or a line break")
        return value

    @field_validator("pgp_public_key")
    @classmethod
    def _no_pgp(cls, value: str | None) -> None:
        if value:
            raise ValueError("PGP encryption is not supported; files would be written unencrypted")
        return None


def sync_options(ctx: WriteContext) -> FileSyncOptions:
    try:
        return FileSyncOptions.model_validate(ctx.options)
    except ValidationError as exc:  # stored before validation existed
        raise TerminalError(options_error(exc)) from None


# --- path templates -------------------------------------------------------------------


class PathTemplate:
    """A parsed object name; raises ``ObjectNotFound`` for a path that cannot be written.
    ``format`` is the one its extension names, or "" for another extension."""

    def __init__(self, source: str) -> None:
        try:
            self._template = _ENV.from_string(source)
        except LiquidError as exc:
            raise ObjectNotFound(f"invalid path template {source!r}: {exc.message}") from exc
        self.per_batch = "batch" in self._template.global_variables()
        sample = self.render(sync_id=0, run_id=0, batch=1, at=datetime.now(UTC))
        self.format = _FORMATS.get(Path(sample).suffix.lower(), "")

    def render(self, *, sync_id: int, run_id: int, batch: int, at: datetime) -> str:
        stamp = at.strftime("%Y%m%dT%H%M%SZ")
        try:
            text = self._template.render(
                sync_id=sync_id, run_id=run_id, batch=batch, timestamp=stamp
            )
        except LiquidError as exc:
            raise ObjectNotFound(f"path template cannot render: {exc.message}") from exc
        # Census's file paths use strftime codes; "%" has no other meaning in a path.
        return at.strftime(text).lstrip("/") if "%" in text else text.lstrip("/")


# --- encoders ---------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class _Encoder:
    """Streams batches of one schema into one open binary file in one format."""

    def __init__(self, fmt: str, stream: IO[bytes], schema: pa.Schema,
                 options: FileSyncOptions | None = None) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        self.fmt, self.stream, self.schema = fmt, stream, schema
        self._rows = 0
        self._writer: Any = None
        options = options or FileSyncOptions()
        if fmt in ("csv", "tsv"):
            csv_options = pacsv.WriteOptions(
                delimiter="\t" if fmt == "tsv" else options.csv_delimiter,
                include_header=options.include_header,
            )
            self._writer = pacsv.CSVWriter(stream, schema, write_options=csv_options)
        elif fmt == "parquet":
            self._writer = pq.ParquetWriter(stream, schema)
        elif fmt == "json":
            stream.write(b"[")

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.schema != self.schema:
            try:  # later batches may infer other types (all-null columns); keep the file's
                batch = pa.Table.from_batches([batch]).cast(self.schema).to_batches()[0]
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise BatchRejected(f"batch does not fit the file's columns: {exc}") from exc
        if self._writer is not None:
            self._writer.write_batch(batch)
            return
        for row in batch.to_pylist():
            line = json.dumps(row, default=_json_default, ensure_ascii=False).encode()
            if self.fmt == "ndjson":
                self.stream.write(line + b"\n")
            else:
                self.stream.write((b",\n" if self._rows else b"\n") + line)
            self._rows += 1

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
        elif self.fmt == "json":
            self.stream.write(b"\n]\n")


# --- storage ----------------------------------------------------------------------------


class _Sink(Protocol):
    stream: IO[bytes]

    def commit(self) -> None: ...
    def abort(self) -> None: ...


class _Store(Protocol):
    def check_connectivity(self) -> None: ...
    def check_write(self) -> None: ...
    def open_sink(self, path: str) -> _Sink: ...


class _LocalSink:
    def __init__(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        self.stream: IO[bytes] = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort

    def commit(self) -> None:
        self.stream.close()
        os.replace(self.tmp, self.target)  # atomic: readers see the old or the whole new file

    def abort(self) -> None:
        self.stream.close()
        self.tmp.unlink(missing_ok=True)


class _LocalStore:
    def __init__(self, config: LocalFilesConfig) -> None:
        self.root = Path(config.directory)

    def check_connectivity(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"directory {str(self.root)!r} does not exist")

    def check_write(self) -> None:
        probe = self.root / f".reflow-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"probe")
        probe.unlink()

    def open_sink(self, path: str) -> _Sink:
        root = self.root.resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or target == root:
            raise TerminalError(f"path {path!r} leaves the directory {str(root)!r}")
        return _LocalSink(target)


class _S3Sink:
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.stream: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in commit

    def commit(self) -> None:
        try:
            self.stream.seek(0)
            # upload_fileobj switches to a multipart upload above its 8 MB threshold.
            _s3_call(self.client.upload_fileobj, self.stream, self.bucket, self.key)
        finally:
            self.stream.close()

    def abort(self) -> None:
        self.stream.close()


class _S3Store:
    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            if self.config.endpoint_url:  # a user-chosen host: the outbound policy judges it
                parts = urlsplit(self.config.endpoint_url)
                check_server(parts.hostname or "", parts.port,
                             default_port=443 if parts.scheme == "https" else 80)
            self._client = boto3.client(
                "s3",
                region_name=self.config.region,
                aws_access_key_id=self.config.access_key_id,
                aws_secret_access_key=self.config.secret_access_key.get_secret_value(),
                endpoint_url=self.config.endpoint_url,
                config=Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3}),
            )
        return self._client

    def check_connectivity(self) -> None:
        self.client.head_bucket(Bucket=self.config.bucket)

    def check_write(self) -> None:
        key = f".reflow-probe-{uuid.uuid4().hex}"
        self.client.put_object(Bucket=self.config.bucket, Key=key, Body=b"probe")
        self.client.delete_object(Bucket=self.config.bucket, Key=key)

    def open_sink(self, path: str) -> _Sink:
        return _S3Sink(self.client, self.config.bucket, path)


def _s3_call(fn: Any, *args: Any) -> Any:
    """Map boto errors onto the retry policy: missing bucket or denied is terminal."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("AccessDenied", "NoSuchBucket", "InvalidAccessKeyId",
                    "SignatureDoesNotMatch", "403", "404"):
            raise TerminalError(str(exc)) from exc
        raise TransientError(str(exc)) from exc
    except BotoCoreError as exc:
        raise TransientError(str(exc)) from exc


# --- writer and connectors --------------------------------------------------------------


class FileWriter(BatchWriter):
    def __init__(self, store: _Store, ctx: WriteContext, started_at: datetime) -> None:
        self.store, self.ctx, self.started_at = store, ctx, started_at
        self.template = PathTemplate(ctx.object_name)
        self.options = sync_options(ctx)
        self.format = self.options.file_format or self.template.format
        if not self.format:
            known = ", ".join(sorted(_FORMATS))
            raise TerminalError(
                f"path {ctx.object_name!r} does not end with one of {known}; "
                "set advanced_configuration.file_format"
            )
        # One file per run is published at close: the engine holds the snapshot until then.
        self.durable_on_write = self.template.per_batch
        self.batches = 0
        self._open: tuple[_Sink, _Encoder] | None = None

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        if action == "delete":
            return WriteResult()  # see the module docstring: removed rows are left out
        if action not in ("upsert", "append"):
            raise TerminalError(f"file destinations cannot {action}; use append/upsert/mirror")
        self.batches += 1
        if self.template.per_batch:
            self._publish(self._start(batch.schema), batch)
            return WriteResult()
        if self._open is None:
            self._open = self._start(batch.schema)
        self._guard(self._open[1].write, batch)
        return WriteResult()

    def close(self) -> None:
        if self.template.per_batch:
            return
        if self._open is None:  # an empty run still replaces the file (mirror of nothing)
            self._open = self._start(pa.schema([(f, pa.string()) for f in self.ctx.fields]))
        opened, self._open = self._open, None
        self._publish(opened, None)

    def abort(self) -> None:
        """Drop the unpublished file: the run failed, and the engine committed none of
        its records to the snapshot, so the next run writes them again."""
        if self._open is not None:
            self._open[0].abort()
            self._open = None

    def _start(self, schema: pa.Schema) -> tuple[_Sink, _Encoder]:
        path = self.template.render(
            sync_id=self.ctx.sync_id, run_id=self.ctx.run_id,
            batch=self.batches, at=self.started_at,
        )
        sink = self._guard(self.store.open_sink, path)
        try:
            return sink, _Encoder(self.format, sink.stream, schema, self.options)
        except Exception:
            sink.abort()
            raise

    def _publish(self, opened: tuple[_Sink, _Encoder], batch: pa.RecordBatch | None) -> None:
        sink, encoder = opened
        try:
            if batch is not None:
                self._guard(encoder.write, batch)
            self._guard(encoder.finish)
        except Exception:
            sink.abort()
            raise
        self._guard(sink.commit)

    @staticmethod
    def _guard(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except PermissionError as exc:
            raise TerminalError(str(exc)) from exc
        except OSError as exc:  # disk full, network file system hiccup
            raise TransientError(str(exc)) from exc


class _FileDestination(DestinationConnector):
    capabilities = DestinationCapabilities(
        operations=_OPERATIONS, batch_size=100_000, file_system=True
    )
    sync_options_model = FileSyncOptions

    def _store(self) -> _Store:
        raise NotImplementedError

    def test_connection(self) -> list[TestStep]:
        store = self._store()
        return run_steps(
            [("Verify connectivity", store.check_connectivity),
             ("Verify write access", store.check_write)]
        )

    def list_objects(self) -> list[DestinationObject]:
        return [self.get_object(EXAMPLE_TEMPLATE)]

    def get_object(self, full_name: str) -> DestinationObject:
        # Any writable path is an object; its columns are whatever the sync maps, hence
        # allow_custom_fields and no fixed fields.
        PathTemplate(full_name)
        return DestinationObject(
            full_name, full_name, _OPERATIONS, fields=(), allow_custom_fields=True
        )

    def open_writer(self, ctx: WriteContext, *, now: datetime | None = None) -> FileWriter:
        return FileWriter(self._store(), ctx, now or datetime.now(UTC))


class LocalFilesDestination(_FileDestination):
    service_name = "local_files"
    label = "Local files"
    documentation_slug = "local-files"
    config_model = LocalFilesConfig
    config: LocalFilesConfig

    def _store(self) -> _Store:
        return _LocalStore(self.config)


class S3Destination(_FileDestination):
    service_name = "s3"
    label = "Amazon S3"
    documentation_slug = "s3"
    config_model = S3Config
    config: S3Config

    def _store(self) -> _Store:
        return _S3Store(self.config)
