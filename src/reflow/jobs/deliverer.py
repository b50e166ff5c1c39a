"""The webhook deliverer: a background thread that sends due outbox rows
(``webhook_deliveries``), signed, and retries failures with exponential backoff.

Each attempt is signed when it is sent (``connectors/webhook_signing.py``): a retry
carries a fresh ``X-Reflow-Timestamp`` and the same ``X-Reflow-Delivery`` id, which is
what receivers deduplicate on. Connections go through the outbound address policy; an
endpoint the policy refuses fails the delivery at once (retrying reaches the same
address).

Start hook: ``start_webhook_deliverer(runtime)`` (the API lifespan calls it; any other
long-lived process may too). Several deliverers may run against one state store: a
delivery is claimed by a conditional update that pushes its ``next_attempt_at`` past
the send timeout, so only one of them sends it at a time. Delivery is at least once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

import httpx
from sqlalchemy import select, update

from reflow import __version__
from reflow.connectors.outbound import OutboundRefused
from reflow.connectors.outbound_http import outbound_client
from reflow.connectors.webhook_signing import sign_body, signature_headers
from reflow.db.tables import utcnow
from reflow.db.tables_hooks import Webhook, WebhookDelivery, WebhookEvent
from reflow.runtime import Runtime
from reflow.services import events

log = logging.getLogger(__name__)
BATCH = 20


def sign(secret: str, body: bytes) -> str:
    """``X-Signature``: Base64 of HMAC-SHA256 over the raw body, keyed by the secret."""
    return sign_body(secret, body)


def backoff(attempts: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2*base, 4*base..."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))


class WebhookDeliverer:
    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        client: httpx.Client | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        settings = runtime.settings
        self._client = client or outbound_client(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        events.subscribe_wakeup(self._wake)
        self._thread = threading.Thread(target=self._loop, name="reflow-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        self._wake.set()
        events.unsubscribe_wakeup(self._wake)
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception:
                log.exception("webhook deliverer pass failed; retrying")
                sent = 0
            if sent == 0:
                self._wake.wait(self.runtime.settings.webhook_poll_seconds)
                self._wake.clear()

    def run_once(self) -> int:
        """Send every delivery due now (claimed one by one); returns how many were tried."""
        tried = 0
        for delivery_id in self._due():
            if self._stop.is_set():
                break
            if self._claim(delivery_id):
                self._send(delivery_id)
                tried += 1
        return tried

    def _due(self) -> list[int]:
        with self.runtime.session() as session:
            return list(
                session.scalars(
                    select(WebhookDelivery.id)
                    .where(
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at <= self.clock(),
                    )
                    .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                    .limit(BATCH)
                )
            )

    def _claim(self, delivery_id: int) -> bool:
        now = self.clock()
        lease = dt.timedelta(seconds=self.runtime.settings.webhook_timeout_seconds + 30)
        with self.runtime.session() as session:
            result = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + lease)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _send(self, delivery_id: int) -> None:
        with self.runtime.session() as session:
            row = session.execute(
                select(WebhookDelivery, Webhook, WebhookEvent)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.id == delivery_id)
            ).first()
            if row is None:  # the webhook was deleted meanwhile
                return
            _, hook, event = row
            endpoint, body, name = hook.endpoint, event.body.encode(), event.event
            secret = self.runtime.vault.decrypt(hook.secret_encrypted)["secret"]
        status, error, final = self._post(endpoint, body, secret, name, delivery_id)
        self._record(delivery_id, status, error, final=final)

    def _post(
        self, endpoint: str, body: bytes, secret: str, event: str, delivery_id: int
    ) -> tuple[int | None, str | None, bool]:
        """(HTTP status, error, whether the error is final)."""
        headers = {
            "Content-Type": "application/json",
            **signature_headers(secret, body),
            "User-Agent": f"Reflow-Webhooks/{__version__}",
            "X-Reflow-Event": event,
            "X-Reflow-Delivery": str(delivery_id),
        }
        try:
            response = self._client.post(endpoint, content=body, headers=headers)
        except OutboundRefused as exc:
            return None, str(exc), True
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}", False
        if 200 <= response.status_code < 300:
            return response.status_code, None, False
        return response.status_code, f"endpoint answered HTTP {response.status_code}", False

    def _record(
        self, delivery_id: int, status: int | None, error: str | None, *, final: bool = False
    ) -> None:
        settings = self.runtime.settings
        now = self.clock()
        with self.runtime.session() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            delivery.last_attempt_at, delivery.response_status = now, status
            delivery.last_error = error
            if error is None:
                delivery.status, delivery.delivered_at = "delivered", now
            elif final or delivery.attempts >= settings.webhook_max_attempts:
                delivery.status = "failed"
                log.warning(
                    "webhook delivery %s given up after %s attempts: %s",
                    delivery_id,
                    delivery.attempts,
                    error,
                )
            else:
                wait = backoff(
                    delivery.attempts,
                    base=settings.webhook_retry_base_seconds,
                    cap=settings.webhook_retry_max_seconds,
                )
                delivery.next_attempt_at = now + dt.timedelta(seconds=wait)


def start_webhook_deliverer(runtime: Runtime) -> WebhookDeliverer:
    """The start hook: a running deliverer; call ``stop()`` on shutdown."""
    deliverer = WebhookDeliverer(runtime)
    deliverer.start()
    return deliverer
