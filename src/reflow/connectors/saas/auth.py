"""How a SaaS connector authenticates: an API key or bearer token, HTTP basic, or an
OAuth 2 refresh-token flow.

Every ``Auth`` does two things for ``VendorClient``: ``apply`` puts the credential on a
request's headers and returns it, and ``refresh(used)`` is called after a 401 with the
credential that request carried; it answers whether retrying can help (a static key:
never).

``OAuthRefresh`` keeps an access token and renews it from the refresh token before it
expires (``leeway``) and after a 401. Concurrent requests that all got a 401 for the same
stale token cause one refresh. A renewed token goes to ``ConnectionHooks.save_credentials``
(the service stores it encrypted) as ``access_token`` and ``access_token_expires_at``
(Unix seconds), plus ``refresh_token`` when the vendor rotated it, so the next process
starts with a valid token instead of refreshing again. When the vendor refuses the
refresh token itself (revoked, expired, app uninstalled), ``ReconnectRequired`` is raised
and ``ConnectionHooks.mark_failed`` told: nothing but a new authorization can help.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from reflow.connectors.errors import TerminalError, TransientError
from reflow.connectors.saas.hooks import ConnectionHooks

if TYPE_CHECKING:
    import httpx


class ReconnectRequired(TerminalError):
    """The vendor refused the refresh token: a person must authorize the connection again."""


class Auth(Protocol):
    def apply(self, headers: dict[str, str]) -> str:
        """Put the credential on ``headers``; return it (compared on a later 401)."""

    def refresh(self, used: str) -> bool:
        """After a 401 for ``used``: True when a request should be retried with a newer
        credential (renewed now, or by another thread meanwhile)."""


class ApiKeyAuth:
    """A static key in a header: ``Authorization: Bearer <key>`` by default."""

    def __init__(self, key: str, *, header: str = "Authorization", prefix: str = "Bearer ") -> None:
        self.key, self.header, self.prefix = key, header, prefix

    def apply(self, headers: dict[str, str]) -> str:
        headers[self.header] = self.prefix + self.key
        return self.key

    def refresh(self, used: str) -> bool:
        return False


class BasicAuth(ApiKeyAuth):
    """HTTP basic authentication (Segment: the write key as user name, no password)."""

    def __init__(self, username: str, password: str = "") -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        super().__init__(token, prefix="Basic ")


class OAuthRefresh:
    """OAuth 2 ``grant_type=refresh_token`` against ``token_url`` (RFC 6749 §6)."""

    def __init__(
        self,
        *,
        vendor: str,
        http: httpx.Client,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        access_token: str | None = None,
        expires_at: float | None = None,
        hooks: ConnectionHooks | None = None,
        on_token: Callable[[Mapping[str, Any]], None] | None = None,
        leeway: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vendor, self.http, self.token_url = vendor, http, token_url
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh_token = refresh_token
        self.access_token, self.expires_at = access_token, expires_at
        self.hooks = hooks or ConnectionHooks()
        #: Sees every token response (Salesforce's carries the instance URL).
        self.on_token = on_token
        self.leeway, self.clock = leeway, clock
        self._lock = threading.Lock()

    def apply(self, headers: dict[str, str]) -> str:
        token = self._current()
        headers["Authorization"] = f"Bearer {token}"
        return token

    def refresh(self, used: str) -> bool:
        with self._lock:
            if self.access_token == used:
                self._renew()
        return True

    def _current(self) -> str:
        with self._lock:
            if self.access_token is None or self._expiring():
                self._renew()
            assert self.access_token is not None
            return self.access_token

    def _expiring(self) -> bool:
        return self.expires_at is not None and self.expires_at - self.leeway <= self.clock()

    def _renew(self) -> None:
        import httpx

        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
        }
        try:
            response = self.http.post(self.token_url, data=form)
        except httpx.HTTPError as exc:
            raise TransientError(
                f"{self.vendor}: cannot reach the OAuth token endpoint: {exc}"
            ) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(
                f"{self.vendor} OAuth token endpoint answered HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        if response.status_code != 200:
            self._refused(response)
        self._accept(response.json())

    def _accept(self, body: Mapping[str, Any]) -> None:
        self.access_token = str(body["access_token"])
        expires_in = body.get("expires_in")
        self.expires_at = self.clock() + float(expires_in) if expires_in else None
        saved: dict[str, Any] = {"access_token": self.access_token,
                                 "access_token_expires_at": self.expires_at}
        rotated = body.get("refresh_token")
        if rotated and rotated != self.refresh_token:
            self.refresh_token = saved["refresh_token"] = str(rotated)
        if self.on_token is not None:
            self.on_token(body)
        self.hooks.save_credentials(saved)

    def _refused(self, response: httpx.Response) -> None:
        message = (
            f"{self.vendor} refused the OAuth refresh token ({oauth_error(response)}). "
            f"Reconnect the destination: authorize Reflow in {self.vendor} again and save "
            "the new refresh token in the destination's credentials."
        )
        self.hooks.mark_failed(message)
        raise ReconnectRequired(message)


def oauth_error(response: httpx.Response) -> str:
    """The vendor's words from an OAuth error body (RFC 6749 §5.2 and vendor variants)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}: {response.text[:300]}"
    code = body.get("error") or body.get("status") or f"HTTP {response.status_code}"
    text = body.get("error_description") or body.get("message") or ""
    return f"{code}: {text}" if text else str(code)
