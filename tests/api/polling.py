"""Polling helpers for Census's asynchronous refresh pattern (deadline, never a sleep
that a test's outcome depends on)."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_refresh(
    api: httpx.Client, status_path: str, key: int, timeout: float = 60
) -> httpx.Response:
    """Poll ``status_path?refresh_key=key`` until it is no longer ``processing``."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(status_path, params={"refresh_key": key})
        if response.json().get("status") != "processing":
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{status_path} still processing after {timeout}s")
        time.sleep(0.1)


def wait_until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
