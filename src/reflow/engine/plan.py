"""What the engine is given to execute a run: a plan, and where to report.

The engine is a core: it reads the source, maps, diffs, writes and keeps its snapshot,
and knows nothing of the state database, the executors, webhooks or the process that
hosts it. The layer above (``reflow.jobs.planning``) reads the sync and run from the
state database, resolves connectors and credentials, chooses the diff strategy and
storage, and hands over a :class:`RunPlan` with a :class:`RunReporter`; tests hand over
in-memory ones. ``lint-imports`` (pyproject.toml) keeps it that way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from reflow.connectors.base import DestinationConnector, SourceConnector
from reflow.storage import Storage

#: ``in_warehouse``: the source diffs against a snapshot it keeps itself (its
#: bookkeeping); ``engine_side``: the engine diffs in a DuckDB snapshot from ``storage``.
DiffStrategy = Literal["in_warehouse", "engine_side"]


@dataclass(frozen=True)
class RunStorage:
    """Where a run keeps what outlives it outside the state database."""

    #: Engine-side snapshots, checked out for the run and checked back in at its end.
    snapshots: Storage
    #: This sync's snapshot object in ``snapshots``.
    snapshot_key: str
    #: Under which ``runs/<run id>/succeeded/`` the succeeded-records log is written.
    records_home: Path
    #: Called with each complete part of that log (shares it through object storage).
    on_record_part: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class RunPlan:
    """One run, decided before it starts. The connectors are open; the engine closes them."""

    run_id: int
    sync_id: int
    source: SourceConnector
    destination: DestinationConnector
    #: The SQL the source runs for the model (segment, table, model or SQL source object).
    query: str
    operation: str
    destination_id: int
    #: The destination object's full name.
    object_name: str
    #: The destination field the records are matched on (the primary identifier's ``to``).
    key_field: str
    #: The sync's mappings as stored, ``segment_membership`` resolved into constants.
    mappings: tuple[dict[str, Any], ...]
    settings: dict[str, Any]
    diff: DiffStrategy
    storage: RunStorage
    #: Rows per batch read from the source (the destination may lower it).
    batch_size: int
    #: The user asked for a full resend (``force_full_sync``).
    force_full: bool = False
    #: Names this installation's bookkeeping in the source (``in_warehouse`` only).
    bookkeeping_namespace: str | None = None

    @property
    def label(self) -> str:
        """The operation records of changed rows are reported under."""
        return "upsert" if self.operation == "mirror" else self.operation


class RunReporter(Protocol):
    """Where a run's progress and results go (the state database, for a real run).

    Keyword values are the run's counters and fields as the Census API names them
    (``current_step``, ``source_record_count``, ``source_record_invalids``,
    ``source_record_updates``, ``source_record_deletes``, ``full_sync``,
    ``records_processed``, ``records_updated``, ``records_failed``, ``error_code``,
    ``error_message``, ``canceled``)."""

    def progress(self, **values: Any) -> bool:
        """Record progress (and that the run is alive); returns whether cancellation was
        requested."""

    def log_records(
        self, records: list[dict[str, Any]], *, status: str, operation: str
    ) -> None:
        """Keep records that were not delivered (``invalid``, ``NULL``, ``DUPLICATE``,
        ``rejected``), each ``{"identifier", "reason", "payload"}``."""

    def finish(self, *, status: str, **values: Any) -> None:
        """The run ended ``completed`` or ``failed``; called exactly once."""
