"""What the service hands a SaaS connector about the connection it serves.

A connector never imports the service (no db, no config). When it must change the stored
connection, it calls these hooks, which the service attaches after building it
(``services/connections.py``): a refreshed OAuth access token is handed to
``save_credentials`` (merged into the stored credentials, encrypted), a refresh token the
vendor refused goes to ``mark_failed`` (the connection shows a failed test saying to
reconnect). Unattached, both do nothing: a connector in a test or a script still works.

This module imports nothing heavy: the service imports it on every connector it builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _ignore(_: Any) -> None:
    return None


@dataclass
class ConnectionHooks:
    #: Merge these keys into the connection's stored credentials (encrypted at rest).
    save_credentials: Callable[[Mapping[str, Any]], None] = field(default=_ignore)
    #: The connection cannot work until a person acts (reconnect); the message says how.
    mark_failed: Callable[[str], None] = field(default=_ignore)


class HooksHolder:
    """Mixin of connectors that accept ``ConnectionHooks`` (the service checks for it)."""

    hooks: ConnectionHooks

    def attach_hooks(self, hooks: ConnectionHooks) -> None:
        self.hooks = hooks

    def connection_hooks(self) -> ConnectionHooks:
        hooks = getattr(self, "hooks", None)
        if hooks is None:
            hooks = self.hooks = ConnectionHooks()
        return hooks
