"""Failed sign-ins, counted per client address, per account and per (account, address),
so that guessing passwords costs time and a victim's account is not locked by a
stranger alone: the per-account limit is ten times the per-pair one.

Memory is bounded: at most ``max_keys`` keys (the least recently failed go first) and
at most ``limit`` timestamps per key. The counts live in one process; with
``reflow serve --workers N`` each worker counts on its own (N times the limits), which
still turns an online guess into hours per password. A refused attempt is not checked
at all, so it costs no password hashing either.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 15 * 60


@dataclass(frozen=True)
class Rule:
    prefix: str
    limit: int


#: Per address, per (account, address), per account, within ``WINDOW_SECONDS``.
RULES = (Rule("ip", 20), Rule("pair", 5), Rule("account", 50))


class SignInThrottle:
    def __init__(self, *, window: float = WINDOW_SECONDS, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.max_keys, self.clock = window, max_keys, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()  # sign-ins are handled on a thread pool

    @staticmethod
    def keys(address: str, account: str | None) -> list[tuple[str, int]]:
        """(key, limit) for an attempt from ``address`` naming ``account`` (an email; None
        for an API token, whose space is too large to guess)."""
        values = {"ip": address}
        if account:
            values |= {"pair": f"{account.lower()}|{address}", "account": account.lower()}
        return [(f"{r.prefix}:{values[r.prefix]}", r.limit) for r in RULES if r.prefix in values]

    def retry_after(self, keys: list[tuple[str, int]]) -> int | None:
        """Seconds until an attempt is allowed again, or None when it is allowed now."""
        now, wait = self.clock(), 0.0
        with self._lock:
            for key, limit in keys:
                stamps = self._failures.get(key)
                if stamps is None:
                    continue
                while stamps and stamps[0] <= now - self.window:
                    stamps.popleft()
                if len(stamps) >= limit:
                    wait = max(wait, stamps[0] + self.window - now)
        return int(wait) + 1 if wait else None

    def failed(self, keys: list[tuple[str, int]]) -> None:
        now = self.clock()
        with self._lock:
            for key, limit in keys:
                stamps = self._failures.pop(key, None) or deque(maxlen=limit)
                stamps.append(now)
                self._failures[key] = stamps  # now the most recent
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, keys: list[tuple[str, int]]) -> None:
        """A right password forgets the account's failures (not the address's)."""
        with self._lock:
            for key, _ in keys:
                if not key.startswith("ip:"):
                    self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
