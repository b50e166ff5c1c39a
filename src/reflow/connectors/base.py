"""The connector contract.

A connector knows nothing about the service around it: it is given its validated
config (a pydantic model) and Arrow record batches, and it returns results or raises
the typed errors of :mod:`reflow.connectors.errors`. It never imports ``reflow.db``,
``reflow.api``, ``reflow.config`` or ``reflow.engine``.

Conventions every connector follows:

* Rows move as ``pyarrow.RecordBatch``; a source yields them with at most
  ``batch_size`` rows each and never holds the whole result in memory.
* A destination batch's columns are named by destination field ``full_name``; the
  sync key column is always present.
* Vendor SDKs are imported lazily inside the connector's methods, so listing the
  registry never imports them.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

StepStatus = Literal["success", "failed", "warning"]
Action = Literal["upsert", "update", "insert", "append", "delete"]

#: Census REST operation names; ``create`` is accepted as an alias of ``insert``.
OPERATIONS: tuple[str, ...] = ("upsert", "update", "insert", "mirror", "append", "delete")


class ConnectorConfig(BaseModel):
    """Base of every connector's credentials model.

    Secrets are ``SecretStr``; each field has a title and description, because the
    model's JSON Schema is what ``/source_types`` and ``/connectors`` serve.
    Unknown keys are ignored (Census clients send extra keys).
    """

    model_config = ConfigDict(
        extra="ignore",
        str_strip_whitespace=True,
        populate_by_name=True,
        # Validation messages must never carry the submitted secrets.
        hide_input_in_errors=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_unset(cls, data: Any) -> Any:
        # Census's Terraform provider sends "" for every optional field it did not set.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data

    def connection_details(self) -> dict[str, Any]:
        """The non-secret part, under the same keys as the input."""
        secret = secret_field_names(type(self))
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in secret}

    def identifying_value(self) -> str | None:
        """What follows "<Label> - " in a default connection name (host, account...)."""
        for key in ("hostname", "account", "path", "url", "host"):
            value = getattr(self, key, None)
            if value:
                return str(value)
        return None


def secret_field_names(model: type[BaseModel]) -> set[str]:
    from pydantic import SecretStr

    out = set()
    for name, info in model.model_fields.items():
        ann = info.annotation
        if ann is SecretStr or SecretStr in getattr(ann, "__args__", ()):
            out.add(name)
    return out


@dataclass(frozen=True)
class TestStep:
    step: str
    status: StepStatus
    message: str | None = None


@dataclass(frozen=True)
class TableRef:
    catalog: str
    schema: str
    name: str


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    #: Whether the column is unique in the table (a primary key or unique constraint).
    unique: bool = False


@dataclass(frozen=True)
class SourceCapabilities:
    #: Source object kinds the connector can read.
    object_kinds: tuple[str, ...] = ("table", "model")
    #: Whether the source can host Reflow's bookkeeping schema (in-warehouse diff).
    supports_bookkeeping: bool = False
    #: Default rows per Arrow batch.
    batch_size: int = 50_000


class SourceConnector(abc.ABC):
    """A warehouse or database that models and tables are read from."""

    service_name: ClassVar[str]
    label: ClassVar[str]
    documentation_slug: ClassVar[str]
    config_model: ClassVar[type[ConnectorConfig]]
    capabilities: ClassVar[SourceCapabilities] = SourceCapabilities()

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def test_connection(self) -> list[TestStep]:
        """Ordered steps; stops at the first failed step, whose message is the
        system's own."""

    @abc.abstractmethod
    def list_tables(self) -> list[TableRef]:
        """Tables and views the credentials can read (system schemas excluded)."""

    @abc.abstractmethod
    def list_columns(self, table: TableRef) -> list[Column]:
        """Columns of one table; raises ``ObjectNotFound`` for an unknown table."""

    @abc.abstractmethod
    def query_columns(self, sql: str) -> list[Column]:
        """Columns a query returns, without reading its rows (read-only, with a
        statement timeout); raises ``InvalidQuery`` with the database's message."""

    @abc.abstractmethod
    def table_query(self, table: TableRef) -> str:
        """``SELECT * FROM <table>`` with every identifier quoted for this dialect."""

    @abc.abstractmethod
    def read(self, sql: str, *, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        """Stream the query's rows as record batches, read-only."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def quote_identifier(self, name: str) -> str:
        """One identifier quoted for this dialect (segments reference columns with it).

        The default reuses the connector's own quoting through ``table_query``, so a
        connector needs no override unless its ``table_query`` does not quote with one
        repeated character; the fallback is standard SQL double quotes."""
        return _quote_like_table_query(self, name)

    def sql_literal(self, value: Any) -> str:
        """``value`` as a safe SQL literal of this dialect, for values that must travel
        inside the SQL text (``read`` takes no parameters; COPY-based reads cannot
        bind). The default is standard SQL; a string holding a backslash is rendered
        after asking the database once whether its string literals treat backslash as
        an escape (MySQL, Snowflake, Redshift do; PostgreSQL, SQLite, DuckDB do not)."""
        from reflow.connectors._literals import standard_literal

        return standard_literal(value, backslash_escapes=lambda: _backslash_escapes(self))


@dataclass(frozen=True)
class DestinationField:
    full_name: str
    label: str
    type: str
    createable: bool = True
    updateable: bool = True
    required: bool = False
    #: Can identify records for upsert/update/insert (a unique or primary key).
    identifier: bool = False
    lookup_object: str | None = None


@dataclass(frozen=True)
class DestinationObject:
    full_name: str
    label: str
    supported_operations: tuple[str, ...]
    fields: tuple[DestinationField, ...] = ()
    allow_custom_fields: bool = False

    def field(self, full_name: str) -> DestinationField | None:
        return next((f for f in self.fields if f.full_name == full_name), None)


@dataclass(frozen=True)
class DestinationCapabilities:
    operations: tuple[str, ...] = ("upsert",)
    #: Records per write call.
    batch_size: int = 50_000
    #: Write calls the engine may run at once.
    max_concurrency: int = 1
    #: Requests per second the destination allows; ``None`` for no limit.
    rate_limit_per_second: float | None = None
    #: Whether the destination's objects are files (the object name is a path template).
    file_system: bool = False
    #: Whether the writer honours the per-mapping ``sync_null_values: false`` (a null
    #: leaves the record's current value) and ``preserve_values: true`` (a value is
    #: written only where the record's field is empty): it must read current values.
    field_preferences: bool = False
    #: Whether the writer honours ``sync_null_values: false`` alone, without reading
    #: current values: it sends each record as a document and leaves a null field out of
    #: it (SaaS APIs, brokers), so the record keeps its value. ``field_preferences``
    #: implies it.
    sync_null_values: bool = False
    #: Whether the writer fills reference fields from ``WriteContext.lookups`` (mappings
    #: with ``lookup_object``/``lookup_field``); elsewhere such mappings are refused.
    lookups: bool = False


@dataclass
class RejectedRecord:
    #: Index of the record within the batch given to ``write``.
    index: int
    reason: str


@dataclass
class WriteResult:
    """Per-record outcome of one ``write``: every record not listed in
    ``rejected`` was accepted."""

    rejected: list[RejectedRecord] = field(default_factory=list)


@dataclass(frozen=True)
class WriteContext:
    """What a writer knows about the run it writes for."""

    sync_id: int
    run_id: int
    object_name: str
    key_field: str
    fields: tuple[str, ...]
    #: Per-sync settings for this destination: the sync's ``advanced_configuration``.
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Fields whose null values must not overwrite the record's value (mappings with
    #: ``sync_null_values: false``).
    keep_on_null: frozenset[str] = frozenset()
    #: Fields written only where the record's value is empty (``preserve_values``).
    set_if_empty: frozenset[str] = frozenset()
    #: Reference fields filled by another object's identifier: field -> (lookup object,
    #: its identifying field) from mappings with ``lookup_object``/``lookup_field``. The
    #: field's value is the parent's identifier, which the writer resolves.
    lookups: Mapping[str, tuple[str, str]] = field(default_factory=dict)


class BatchWriter(abc.ABC):
    """Writes the batches of one sync run into one destination object."""

    #: Whether what ``write`` accepted is durable when ``write`` returns. A writer that
    #: publishes only at ``close`` (one file per run) sets this False: the engine then
    #: commits the snapshot after ``close`` succeeds, and calls ``abort`` on failure, so
    #: nothing it never published is recorded as delivered.
    durable_on_write: bool = True

    @abc.abstractmethod
    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        """Write one batch. Record-level refusals go in the result; a refusal of the
        whole batch for its data raises ``BatchRejected``; other failures raise
        ``TransientError`` or ``TerminalError``. Must be idempotent for upsert,
        update and delete, so a resent batch is harmless."""

    #: Batches a pipelined writer lets the engine have in flight through ``submit``;
    #: 0 (the default) for a writer the engine calls through ``write`` one at a time.
    pipeline_depth: int = 0
    #: Whether the writer cuts each batch into requests of its own (the HTTP writers:
    #: a sync's ``advanced_configuration.batch_size`` is then its records per request,
    #: and the engine does not cut its batches to it).
    cuts_requests: bool = False

    def submit(self, batch: pa.RecordBatch, action: Action) -> Future[WriteResult]:
        """Start writing one batch and return without waiting for it (writers with a
        ``pipeline_depth``): the engine submits the next batches while this one's
        requests are in flight, and settles the futures in submission order. The
        future's outcome is what ``write`` would have returned or raised for the batch;
        a failure there must leave no record of the batch counted as written (the
        engine retries the batch, or fails the run, from that outcome alone)."""
        raise NotImplementedError(f"{type(self).__name__} does not pipeline writes")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush, publish and release resources at the end of the run."""

    def abort(self) -> None:
        """The run failed or was canceled. Called instead of ``close`` only when
        ``durable_on_write`` is False: drop what is not yet published. Defaults to
        ``close``."""
        self.close()


@dataclass(frozen=True)
class ObjectAttribute:
    """One attribute of an object type (Census §15.4): of the object itself, or of each
    of its fields."""

    key: str
    label: str
    type: str = "string"
    required: bool = False
    hint: str | None = None
    possible_values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ObjectType:
    """A kind of object a destination can create (``/object_types``)."""

    type: str
    object_attributes: tuple[ObjectAttribute, ...] = ()
    field_attributes: tuple[ObjectAttribute, ...] = ()


class DestinationConnector(abc.ABC):
    """Where synced records go."""

    service_name: ClassVar[str]
    label: ClassVar[str]
    documentation_slug: ClassVar[str]
    config_model: ClassVar[type[ConnectorConfig]]
    capabilities: ClassVar[DestinationCapabilities] = DestinationCapabilities()
    #: The per-sync settings a sync passes in ``advanced_configuration``, or ``None`` when
    #: the destination takes none. Validated when a sync is created or updated (with
    #: validation context ``object_name``: the sync's destination object, and ``fields``:
    #: the mapped field names, or ``None`` when the sync sends all properties); errors name
    #: the field. The writer reads the same keys from ``WriteContext.options``. Its JSON
    #: Schema is served as the object's ``advanced_configuration_field_definitions``.
    sync_options_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def test_connection(self) -> list[TestStep]:
        """Ordered steps, as for sources."""

    @abc.abstractmethod
    def list_objects(self) -> list[DestinationObject]:
        """Objects the credentials can write, with their fields."""

    def get_object(self, full_name: str) -> DestinationObject:
        from reflow.connectors.errors import ObjectNotFound

        for obj in self.list_objects():
            if obj.full_name == full_name:
                return obj
        raise ObjectNotFound(f"object {full_name!r} not found in the destination")

    @abc.abstractmethod
    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        """A writer for one run into ``ctx.object_name``."""

    #: Kinds of object ``create_object`` can make; empty when it cannot create any.
    object_types: ClassVar[tuple[ObjectType, ...]] = ()

    def create_object(
        self, object_type: str, attributes: Mapping[str, Any], fields: list[Mapping[str, Any]]
    ) -> DestinationObject:
        """Create a new object (a table...) of one of ``object_types`` and return it.

        ``attributes`` are keyed by the type's object attribute keys, each of ``fields``
        by its field attribute keys; the service has checked required keys and
        ``possible_values`` already. Raises ``TerminalError`` with the system's own
        message when the system refuses (the object exists, no permission).
        """
        from reflow.connectors.errors import TerminalError

        raise TerminalError(f"{self.label} destinations cannot create objects")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def options_error(exc: ValidationError, *, prefix: str = "advanced_configuration.") -> str:
    """The first error of a ``sync_options_model`` validation as ``<prefix><field>: <msg>``."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{prefix}{where}: {message}" if where else f"{prefix.rstrip('.')}: {message}"


def run_steps(steps: list[tuple[str, Any]], *, warn: set[str] | None = None) -> list[TestStep]:
    """Run named checks in order; the first that raises fails its step and ends the
    test (a step named in ``warn`` only warns and the test goes on)."""
    warn = warn or set()
    out: list[TestStep] = []
    for name, check in steps:
        try:
            check()
        except Exception as exc:  # the system's own message is the point
            message = str(exc).strip() or type(exc).__name__
            if name in warn:
                out.append(TestStep(name, "warning", message))
                continue
            out.append(TestStep(name, "failed", message))
            break
        out.append(TestStep(name, "success"))
    return out


def _quote_like_table_query(connector: SourceConnector, name: str) -> str:
    probe = connector.table_query(TableRef("c", "s", "a"))
    mark = probe[-1:]
    if len(probe) >= 3 and mark in ('"', "`") and probe.endswith(mark + "a" + mark):
        quoted = connector.table_query(TableRef("c", "s", name))[len(probe) - 3 :]
        if len(quoted) >= 2 and quoted[0] == mark and quoted[-1] == mark:
            return quoted
    return '"' + name.replace('"', '""') + '"'


def _backslash_escapes(connector: SourceConnector) -> bool:
    cached = connector.__dict__.get("_reflow_backslash_escapes")
    if cached is None:
        # Two backslashes in the SQL text: one character back means they escape.
        batches = list(connector.read("SELECT '\\\\' AS b"))
        value = next(v for b in batches for v in b.column(0).to_pylist())
        cached = connector.__dict__["_reflow_backslash_escapes"] = len(value) == 1
    return bool(cached)
