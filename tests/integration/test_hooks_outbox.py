"""The webhook outbox and management links against a real state store (SQLite) and a
real loopback HTTP receiver, with an injected clock: retries back off exponentially
and give up; events are recorded once; expired links grant nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from reflow.config import Settings
from reflow.db.tables import Destination, Source, Sync, SyncRun, utcnow
from reflow.db.tables_hooks import Webhook, WebhookDelivery, WebhookEvent
from reflow.errors import Gone
from reflow.jobs.deliverer import WebhookDeliverer, backoff, sign
from reflow.runtime import Runtime
from reflow.services import events, links
from reflow.services.bootstrap import initialize
from tests.api.hooks_helpers import receiver

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


class Clock:
    """Starts just after now (events are queued due at the real time), then only moves
    when told to."""

    def __init__(self) -> None:
        self.now = utcnow() + dt.timedelta(seconds=1)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(home=tmp_path, secret_key="k" * 32, webhook_retry_base_seconds=10,
                        webhook_retry_max_seconds=25, webhook_max_attempts=4)
    runtime = Runtime.from_settings(settings)
    initialize(runtime.engine)
    yield runtime
    runtime.engine.dispose()


def _run(runtime: Runtime, endpoint: str) -> tuple[int, str]:
    """A workspace webhook and a failed run of a sync with a failure alert;
    returns (run id, secret)."""
    with runtime.session() as session:
        hook = Webhook(workspace_id=1, name="h", endpoint=endpoint, events=list(events.EVENTS),
                       secret_encrypted=runtime.vault.encrypt({"secret": "s3cret"}))
        source = Source(workspace_id=1, name="s", type="postgres", credentials_encrypted="x")
        destination = Destination(workspace_id=1, name="d", type="postgres",
                                  credentials_encrypted="x")
        session.add_all([hook, source, destination])
        session.flush()
        sync = Sync(workspace_id=1, operation="upsert", source_id=source.id, source_object={},
                    destination_id=destination.id, destination_object="x", mappings=[],
                    alert_attributes=[{"type": "FailureAlertConfiguration"}])
        session.add(sync)
        session.flush()
        run = SyncRun(workspace_id=1, sync_id=sync.id, status="failed", error_message="boom",
                      started_at=T0, completed_at=T0)
        session.add(run)
        session.flush()
        return run.id, "s3cret"


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, base=10, cap=60) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_events_recorded_once_and_retried_with_backoff(runtime: Runtime) -> None:
    clock = Clock()
    with receiver() as inbox:
        run_id, secret = _run(runtime, inbox.url)
        events.run_finished(runtime, run_id)
        events.run_finished(runtime, run_id)  # a duplicate call records nothing new
        with runtime.session() as session:
            names = session.scalars(select(WebhookEvent.event).order_by(WebhookEvent.id)).all()
        assert names == ["sync.completed", "sync.failed", "sync.alert.raised"]

        inbox.statuses.update({0: 500, 3: 502})  # the first delivery fails twice
        deliverer = WebhookDeliverer(runtime, clock=clock)
        try:
            assert deliverer.run_once() == 3
            assert len(inbox.requests) == 3
            assert deliverer.run_once() == 0  # the failed one waits for its backoff
            clock.advance(9)
            assert deliverer.run_once() == 0
            clock.advance(1)
            assert deliverer.run_once() == 1  # second attempt after 10 s, refused again
            clock.advance(19)
            assert deliverer.run_once() == 0
            clock.advance(1)
            assert deliverer.run_once() == 1  # third attempt after 20 s more: delivered
        finally:
            deliverer.stop()
    first = inbox.requests[0]
    assert first.headers["X-Signature"] == sign(secret, first.body)
    assert inbox.requests[4].body == first.body  # retries resend the same signed body
    with runtime.session() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        assert [(r.status, r.attempts) for r in rows] == [
            ("delivered", 3), ("delivered", 1), ("delivered", 1)]


def test_deliveries_are_given_up_after_max_attempts(runtime: Runtime) -> None:
    clock = Clock()
    with receiver() as inbox:
        run_id, _ = _run(runtime, inbox.url)
        inbox.statuses.update({i: 500 for i in range(100)})
        events.run_finished(runtime, run_id)
        deliverer = WebhookDeliverer(runtime, clock=clock)
        try:
            for _ in range(6):
                deliverer.run_once()
                clock.advance(25)  # the capped backoff
        finally:
            deliverer.stop()
    with runtime.session() as session:
        rows = session.scalars(select(WebhookDelivery)).all()
        assert {(r.status, r.attempts, r.response_status) for r in rows} == {("failed", 4, 500)}
    assert len(inbox.requests) == 12


def test_expired_link_grants_nothing(runtime: Runtime) -> None:
    with runtime.session() as session:
        link = links.create(session, workspace_id=1, vault=runtime.vault, kind="sync",
                            ttl_seconds=3600, body={}, now=T0)
        token = links.token_of(link, runtime.vault)
        assert link.token_hash != token and token not in link.token_encrypted
    with runtime.session() as session:
        live = links.resolve(session, token=token, kind="sync", now=T0 + dt.timedelta(minutes=59))
        assert live.id == link.id
        assert not links.expired(live, T0 + dt.timedelta(minutes=59))
        with pytest.raises(Gone, match="expired"):
            links.resolve(session, token=token, kind="sync", now=T0 + dt.timedelta(hours=1))
        assert links.expired(live, T0 + dt.timedelta(hours=1))
