"""What a process holds for its lifetime: settings, database, vault, executor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from reflow.config import Settings, get_settings
from reflow.crypto import Vault
from reflow.db.engine import make_engine, make_polled_read_engine, make_session_factory

if TYPE_CHECKING:
    from reflow.storage import RunFiles, Storage


class Executor(Protocol):
    """Runs sync runs by id (``reflow.jobs``: local threads or Celery workers)."""

    def submit(self, run_id: int) -> None: ...

    def start(self) -> None: ...

    def shutdown(self, *, wait: bool = True) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    vault: Vault
    executor: Executor | None = field(default=None)
    #: PostgreSQL: the engine and sessions of the API's polled reads
    #: (``db.engine.make_polled_read_engine``); None on SQLite, where they use ``sessions``.
    read_engine: Engine | None = field(default=None)
    polled_reads: sessionmaker[Session] | None = field(default=None)
    _installation_id: str | None = field(default=None, repr=False)
    _snapshots: Storage | None = field(default=None, repr=False)
    _run_files: RunFiles | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Runtime:
        settings = settings or get_settings()
        settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        install_outbound_policy(settings)
        engine = make_engine(settings.resolved_database_url)
        reads = make_polled_read_engine(settings.resolved_database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            vault=Vault(settings.resolved_secret_key()),
            read_engine=reads,
            polled_reads=sessionmaker(reads, expire_on_commit=False) if reads else None,
        )

    def dispose(self) -> None:
        """Close the pooled connections (both engines')."""
        self.engine.dispose()
        if self.read_engine is not None:
            self.read_engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work for jobs: commits once at the end, rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def installation_id(self) -> str:
        """This installation's id (created by the schema migrations)."""
        if self._installation_id is None:
            from sqlalchemy import select

            from reflow.db.tables import Installation

            with self.sessions() as session:
                value = session.scalar(select(Installation.installation_id).limit(1))
            if value is None:
                raise RuntimeError("the state store has no installation id; run `reflow migrate`")
            self._installation_id = value
        return self._installation_id

    @property
    def snapshots(self) -> Storage:
        """Where engine-side snapshots live (storage.py): this machine's snapshot_dir, or
        ``REFLOW_STORAGE_URL``'s ``snapshots/`` prefix shared by every worker."""
        if self._snapshots is None:
            from reflow.storage import open_storage

            url = self.settings.storage_url
            self._snapshots = open_storage(
                f"{url.rstrip('/')}/snapshots" if url else None,
                local_root=self.settings.resolved_snapshot_dir,
                work_dir=self.settings.home / "work",
            )
        return self._snapshots

    @property
    def run_files(self) -> RunFiles:
        """Per-run record logs: ``home/runs``, shared through ``REFLOW_STORAGE_URL``'s
        ``runs/`` prefix when it is set."""
        if self._run_files is None:
            from reflow.storage import RunFiles, S3Storage

            url = self.settings.storage_url
            shared = (S3Storage(f"{url.rstrip('/')}/runs", self.settings.home / "work")
                      if url and url.startswith("s3://") else None)
            self._run_files = RunFiles(self.settings.home, shared)
        return self._run_files

    def enqueue(self, run_id: int) -> None:
        if self.executor is None:
            raise RuntimeError("no executor attached to this runtime")
        self.executor.submit(run_id)


def install_outbound_policy(settings: Settings, *, serving_host: str | None = None) -> None:
    """Install the process's outbound address policy from the settings. Loopback is
    allowed only on the embedded default: SQLite state, served on a loopback address
    (the README's first sync reads a local database)."""
    import ipaddress

    from reflow.connectors import outbound

    exposed = False
    if serving_host is not None and serving_host != "localhost":
        try:
            exposed = not ipaddress.ip_address(serving_host).is_loopback
        except ValueError:  # a host name to bind: treat as exposed
            exposed = True
    policy = outbound.Policy.parse(
        allow=settings.outbound_allow, deny=settings.outbound_deny,
        allow_loopback=not (settings.is_production or exposed),
    )
    outbound.install(policy)
