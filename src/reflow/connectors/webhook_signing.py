"""Signatures of the requests Reflow sends to webhooks (workspace webhooks and the
Webhook destination), so a receiver can tell they came from Reflow and are fresh.

Each attempt carries, computed when it is sent (a retry is signed anew):

* ``X-Reflow-Timestamp: <unix seconds>``
* ``X-Reflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``
  (Stripe's scheme: the timestamp is covered by the signature, so a captured request
  cannot be replayed after the receiver's tolerance, 5 minutes recommended);
* ``X-Signature: base64(HMAC-SHA256(secret, raw body))``, the Census-compatible form,
  kept for receivers written against Census. It has no timestamp: receivers that can
  should verify ``X-Reflow-Signature`` instead (docs/webhooks.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

TIMESTAMP_HEADER = "X-Reflow-Timestamp"
SIGNATURE_HEADER = "X-Reflow-Signature"
LEGACY_SIGNATURE_HEADER = "X-Signature"
#: What the docs tell receivers to accept between the timestamp and their clock.
TOLERANCE_SECONDS = 300


def sign_body(secret: str, body: bytes) -> str:
    """The Census-compatible ``X-Signature``: Base64 HMAC-SHA256 over the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def sign_timestamped(secret: str, body: bytes, timestamp: int) -> str:
    """Hex HMAC-SHA256 over ``"<timestamp>.<body>"``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(
    secret: str, body: bytes, *, clock: Callable[[], float] | None = None
) -> dict[str, str]:
    """The three headers of one attempt, signed now."""
    timestamp = int((clock or time.time)())
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"t={timestamp},v1={sign_timestamped(secret, body, timestamp)}",
        LEGACY_SIGNATURE_HEADER: sign_body(secret, body),
    }


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a receiver does with ``X-Reflow-Signature`` (a reference implementation for
    the docs and tests): a ``v1`` matches and the timestamp is within ``tolerance``."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign_timestamped(secret, body, timestamp)
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))
