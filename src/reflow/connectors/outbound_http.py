"""The one way to build an httpx client for an address a user chose.

``outbound_client()`` returns an ``httpx.Client`` whose every TCP connection, the first
one and each redirect hop alike, goes through the outbound address policy
(``reflow.connectors.outbound``): the host is resolved, the addresses judged, and the
socket connected to an address that was judged, so a DNS answer that changes between
the check and the connect (rebinding) cannot slip an internal address in. TLS still
verifies the certificate against the host name (httpcore passes it as SNI).

A refusal raises ``OutboundRefused`` (a ``TerminalError``) out of ``client.request``
before any byte is sent: headers with secrets never leave for a refused address.
Environment proxies are not used (``HTTP_PROXY`` would hide the real target).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from reflow.connectors import outbound
from reflow.connectors.outbound import Policy, Resolver


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: Policy | None = None, resolver: Resolver | None = None) -> None:
        self.policy, self.resolver = policy, resolver or outbound.resolve
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = outbound.check_host(host, port, policy=self.policy or outbound.active(),
                                            resolver=self.resolver)
        except OSError as exc:  # does not resolve: like any failed connect (transient)
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return self.inner.connect_tcp(address, port, timeout, local_address,
                                              socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not an outbound address")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, *, policy: Policy | None = None, resolver: Resolver | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # httpx does not expose httpcore's network_backend; the pool reads this
        # attribute each time it opens a connection.
        self._pool._network_backend = GuardedBackend(policy, resolver)  # type: ignore[union-attr]


def outbound_client(
    *,
    limits: httpx.Limits | None = None,
    policy: Policy | None = None,
    resolver: Resolver | None = None,
    **client_kwargs: Any,
) -> httpx.Client:
    """An ``httpx.Client`` for user-chosen addresses (``client_kwargs`` as for
    ``httpx.Client``: headers, timeout, follow_redirects...). ``policy`` defaults to the
    process's active policy at each connect; ``resolver`` is for tests."""
    transport = GuardedTransport(
        policy=policy, resolver=resolver, limits=limits or httpx.Limits()
    )
    return httpx.Client(transport=transport, **client_kwargs)
