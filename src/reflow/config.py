"""The one settings object. No other module reads ``os.environ``."""

from __future__ import annotations

import os
import secrets
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REFLOW_", extra="ignore")

    home: Path = Field(Path(".reflow"), description="Where the embedded default keeps its state.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the control-plane database; SQLite under home if unset.",
    )
    secret_key: SecretStr | None = Field(
        None, description="Encrypts credentials at rest; generated under home if unset."
    )
    executor: Literal["local", "celery"] = "local"
    broker_url: str = "redis://127.0.0.1:6379/0"
    local_workers: int = Field(2, ge=1, description="Threads of the local executor.")
    snapshot_dir: Path | None = Field(
        None, description="Where engine-side snapshots live; home/snapshots if unset."
    )
    storage_url: str | None = Field(
        None,
        description="Where runs keep engine-side snapshots: s3://bucket/prefix (configured by "
        "the standard AWS_* variables) when workers run on several machines; unset: "
        "snapshot_dir on this machine's disk.",
    )
    record_retention_days: int = Field(
        14, ge=1, description="Record logs of runs older than this are deleted (Census: 14)."
    )
    batch_size: int = Field(50_000, ge=1, description="Rows per Arrow batch on the data path.")
    public_url: str | None = Field(None, description="Base URL used in links the API returns.")
    log_level: str = "INFO"
    # --- jobs: scheduler, workers, crash safety (issue 6) ---
    log_format: Literal["text", "json"] = Field(
        "text", description="text: key=value lines; json: one JSON object per line."
    )
    celery_queue: str = Field("reflow", description="Broker queue the Celery executor uses.")
    embedded_scheduler: bool | None = Field(
        None,
        description="Run the scheduler in `reflow serve`; default: only with the local executor.",
    )
    scheduler_interval: float = Field(5.0, gt=0, description="Seconds between scheduler ticks.")
    heartbeat_interval: float = Field(
        5.0, gt=0, description="Seconds between heartbeats of a working run."
    )
    heartbeat_timeout: float = Field(
        60.0, gt=0, description="A working run without a heartbeat for this long is failed as lost."
    )
    requeue_after: float = Field(
        300.0, gt=0, description="A queued run not claimed for this long is sent again."
    )
    # Webhooks, alerts and management links (services/webhooks.py, jobs/deliverer.py, links.py)
    allow_http_webhooks: bool = Field(
        False, description="Accept plain-HTTP webhook endpoints (loopback is always accepted)."
    )
    webhook_timeout_seconds: float = Field(10, gt=0, description="Timeout of one delivery.")
    webhook_max_attempts: int = Field(8, ge=1, description="Deliveries given up after this.")
    webhook_retry_base_seconds: float = Field(
        10, gt=0, description="First retry delay; doubles per attempt (exponential backoff)."
    )
    webhook_retry_max_seconds: float = Field(3600, gt=0, description="Cap of the retry delay.")
    webhook_poll_seconds: float = Field(
        5, gt=0, description="How often the deliverer looks for due deliveries when not woken."
    )
    management_link_ttl_seconds: int = Field(
        86_400, ge=1, description="Lifetime of sync/segment management links (Census: 24 h)."
    )
    # Outbound address policy (connectors/outbound.py; docs/production.md)
    outbound_allow: str = Field(
        "", description="Comma-separated CIDRs and host names outbound connections may reach "
        "even where the default policy refuses (loopback in production, link-local, metadata).",
    )
    outbound_deny: str = Field(
        "", description="Comma-separated CIDRs and host names outbound connections never reach.",
    )
    export_ttl_seconds: int = Field(
        900, ge=1, description="Lifetime of a records-export download URL and of its file.",
    )
    # The API edge (api/edge.py): bounds checked before a body is parsed (issue 17).
    max_body_bytes: int = Field(
        1_048_576, ge=1, description="Largest request body /api/v1 accepts (413 above)."
    )
    max_ingest_bytes: int = Field(
        5_242_880,
        ge=1,
        description="Largest body topic ingestion (/ingest) accepts (413 above); room for a "
        "full batch of 10,000 typical events.",
    )
    max_json_depth: int = Field(64, ge=1, description="Deepest JSON nesting a body may have (400).")
    max_model_query_chars: int = Field(
        100_000, ge=1, description="Longest SQL a model or dataset query may have (400)."
    )
    api_max_concurrency: int = Field(
        8, ge=1, description="API requests one process handles at once (api/overload.py)."
    )
    api_queue_seconds: float = Field(
        0.5, ge=0, description="Longest a request past capacity waits before a 503 + Retry-After."
    )

    @property
    def is_production(self) -> bool:
        """State in another database than the embedded SQLite file."""
        return not self.resolved_database_url.startswith("sqlite")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'reflow.db').resolve()}"

    @property
    def resolved_snapshot_dir(self) -> Path:
        return self.snapshot_dir or self.home / "snapshots"

    def resolved_secret_key(self) -> str:
        """The configured key, or one generated once and kept in home with mode 0600."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.home / "secret.key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
        return path.read_text().strip()


@cache
def get_settings() -> Settings:
    return Settings()
