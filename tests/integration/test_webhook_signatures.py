"""Timestamped webhook signatures (Stripe's scheme): workspace webhook deliveries and the
Webhook destination's requests carry ``X-Reflow-Timestamp`` and ``X-Reflow-Signature:
t=...,v1=...`` over ``"<t>.<body>"``; each attempt is signed when it is sent, so a retry
has a fresh timestamp and the same delivery id; a captured request does not verify once
the receiver's tolerance has passed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import select

from reflow.config import Settings
from reflow.connectors import outbound, webhook_signing
from reflow.connectors.base import WriteContext
from reflow.connectors.destinations.webhook import WebhookConfig, WebhookDestination
from reflow.connectors.webhook_signing import TOLERANCE_SECONDS, verify
from reflow.db.tables import Destination, Source, Sync, SyncRun, utcnow
from reflow.db.tables_hooks import Webhook, WebhookDelivery
from reflow.jobs.deliverer import WebhookDeliverer
from reflow.runtime import Runtime
from reflow.services import events
from reflow.services.bootstrap import initialize
from tests.api.hooks_helpers import Received, receiver

SECRET = "whsec-test-secret"


class FakeTime:
    """Wall clock of the signing module only: 1_800_000_000, +100 s per reading."""

    def __init__(self) -> None:
        self.ticks = count()

    def time(self) -> float:
        return 1_800_000_000 + 100 * next(self.ticks)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_signing, "time", FakeTime())


def _signed_at(request: Received) -> int:
    header = request.headers["X-Reflow-Signature"]
    timestamp = int(request.headers["X-Reflow-Timestamp"])
    assert header.startswith(f"t={timestamp},v1=")
    assert verify(SECRET, request.body, header, now=timestamp)
    return timestamp


def test_verify_rejects_replays_tampering_and_other_secrets() -> None:
    body, t = b'{"event":"sync.completed"}', 1_800_000_000
    header = f"t={t},v1={webhook_signing.sign_timestamped(SECRET, body, t)}"
    assert verify(SECRET, body, header, now=t + TOLERANCE_SECONDS)
    assert not verify(SECRET, body, header, now=t + TOLERANCE_SECONDS + 1)  # replayed later
    assert not verify(SECRET, body + b" ", header, now=t)
    assert not verify("other", body, header, now=t)
    moved = header.replace(f"t={t}", f"t={t + 600}")  # a fresher timestamp on old bytes
    assert not verify(SECRET, body, moved, now=t + 600)
    assert not verify(SECRET, body, "v1=abc", now=t)


# --- workspace webhooks ---------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(home=tmp_path, secret_key="k" * 32, webhook_retry_base_seconds=10)
    runtime = Runtime.from_settings(settings)
    initialize(runtime.engine)
    yield runtime
    runtime.engine.dispose()


def _failed_run(runtime: Runtime, endpoint: str) -> int:
    with runtime.session() as session:
        hook = Webhook(workspace_id=1, name="h", endpoint=endpoint, events=["sync.failed"],
                       secret_encrypted=runtime.vault.encrypt({"secret": SECRET}))
        source = Source(workspace_id=1, name="s", type="postgres", credentials_encrypted="x")
        destination = Destination(workspace_id=1, name="d", type="postgres",
                                  credentials_encrypted="x")
        session.add_all([hook, source, destination])
        session.flush()
        sync = Sync(workspace_id=1, operation="upsert", source_id=source.id, source_object={},
                    destination_id=destination.id, destination_object="x", mappings=[])
        session.add(sync)
        session.flush()
        now = utcnow()
        run = SyncRun(workspace_id=1, sync_id=sync.id, status="failed", error_message="boom",
                      started_at=now, completed_at=now)
        session.add(run)
        session.flush()
        return run.id


def test_workspace_webhook_retry_is_signed_afresh(runtime: Runtime, fake_time: None) -> None:
    clock = {"now": utcnow() + dt.timedelta(seconds=1)}
    with receiver() as inbox:
        inbox.statuses[0] = 503
        events.run_finished(runtime, _failed_run(runtime, inbox.url))
        deliverer = WebhookDeliverer(runtime, clock=lambda: clock["now"])
        try:
            assert deliverer.run_once() == 1
            clock["now"] += dt.timedelta(seconds=11)
            assert deliverer.run_once() == 1
        finally:
            deliverer.stop()
    first, retry = inbox.requests
    assert retry.body == first.body
    assert retry.headers["X-Reflow-Delivery"] == first.headers["X-Reflow-Delivery"]
    assert _signed_at(retry) > _signed_at(first)  # signed when sent, not when queued
    assert not verify(SECRET, first.body, first.headers["X-Reflow-Signature"],
                      now=_signed_at(first) + TOLERANCE_SECONDS + 1)
    # The Census-compatible body-only signature is still sent.
    assert first.headers["X-Signature"] == webhook_signing.sign_body(SECRET, first.body)


# --- the Webhook destination ----------------------------------------------------------


def test_webhook_destination_signs_every_attempt(fake_time: None) -> None:
    with receiver() as inbox:
        inbox.statuses[1] = 503  # the first record request is refused, then retried
        config = WebhookConfig(url=inbox.url, signing_secret=SECRET, batch_size=10)
        destination = WebhookDestination(config, sleep=lambda seconds: None)
        ctx = WriteContext(sync_id=1, run_id=1, object_name="webhook", key_field="id",
                           fields=("id",))
        assert [s.status for s in destination.test_connection()] == ["success"]
        writer = destination.open_writer(ctx)
        try:
            result = writer.write(pa.RecordBatch.from_pylist([{"id": 1}, {"id": 2}]), "upsert")
        finally:
            writer.close()
    assert result.rejected == []
    _, refused, accepted = inbox.requests  # the connection test's POST, then two attempts
    assert refused.body == accepted.body
    assert _signed_at(accepted) > _signed_at(refused)


def test_a_refused_endpoint_fails_the_delivery_at_once(runtime: Runtime) -> None:
    """An endpoint that now resolves where the policy refuses (here: loopback, as in a
    production deployment) is never contacted, and retrying would not help."""
    with receiver() as inbox:
        events.run_finished(runtime, _failed_run(runtime, inbox.url))
        outbound.install(outbound.Policy(allow_loopback=False))
        deliverer = WebhookDeliverer(runtime, clock=lambda: utcnow() + dt.timedelta(seconds=1))
        try:
            assert deliverer.run_once() == 1
        finally:
            deliverer.stop()
            outbound.install(None)
    assert inbox.requests == []
    with runtime.session() as session:
        (delivery,) = session.scalars(select(WebhookDelivery)).all()
        assert (delivery.status, delivery.attempts) == ("failed", 1)
        assert "127.0.0.1" in delivery.last_error and "REFLOW_OUTBOUND_ALLOW" in delivery.last_error
