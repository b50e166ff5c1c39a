"""Segment's HTTP Tracking API as a real HTTP server on loopback, for the ``segment``
connector's tests. What arrived is kept: identified users' traits, groups' traits, track
events, and the messages Segment would have dropped.

Written from Segment's public references (pages followed):

* HTTP API source, https://www.twilio.com/docs/segment/connections/sources/catalog/libraries/server/http-api
  — ``POST /v1/batch`` with ``{"batch": [<identify|group|track|...>]}``; write key
  authentication as HTTP basic (the write key as user name, empty password); each
  message needs ``userId`` or ``anonymousId``, a track an ``event``, a group a
  ``groupId``; ``messageId`` deduplicates.
* Max request size (segment-docs PR #1042 and the errors section): 500 KB a batch
  request, 32 KB a message; beyond either, 400 Bad Request. Every other request answers
  200 ``{"success": true}``, even when a message is then dropped (missing identifier or
  event name): Segment's debugger shows those, here ``dropped`` does.
* Rate: no hard limit is documented for the HTTP API; a ``throttle`` makes the fake
  answer 429 with ``Retry-After`` to exercise the client's pacing.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from tests.support.fakes._server import Blips, FakeServer, Incoming, Reply

MAX_BATCH = 500 * 1024
MAX_MESSAGE = 32 * 1024


class SegmentFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.RLock()
        self.write_keys = {"seg-write-key"}
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.memberships: set[tuple[str, str]] = set()
        self.tracks: list[dict[str, Any]] = []
        self.dropped: list[dict[str, Any]] = []
        self.batches: list[int] = []  # bytes of each accepted batch request
        self.seen: set[str] = set()
        self.blips = Blips()
        self.throttle = 0  # the next n batches answer 429

    def credentials(self, **overrides: Any) -> dict[str, Any]:
        return {"write_key": "seg-write-key", "base_url": self.url, **overrides}

    def clear(self) -> None:
        with self.lock:
            for store in (self.users, self.groups):
                store.clear()
            self.memberships.clear()
            for log in (self.tracks, self.dropped, self.batches):
                log.clear()
            self.seen.clear()

    def route(self, request: Incoming) -> Reply:
        if request.path != "/v1/batch" or request.method != "POST":
            return Reply(404, {"success": False, "message": "not found"})
        if self._write_key(request) not in self.write_keys:
            return Reply(401, {"success": False, "message": "Invalid write key",
                               "code": "invalid_write_key"})
        with self.lock:
            if self.throttle:
                self.throttle -= 1
                return Reply(429, {"success": False, "message": "Too many requests"},
                             {"Retry-After": "0"})
        status = self.blips.take()
        if status is not None:
            return Reply(status, {"success": False, "message": "Service Unavailable"})
        if len(request.body) > MAX_BATCH:
            return Reply(400, {"success": False, "message": "Batch size exceeds 500KB"})
        try:
            batch = request.json()["batch"]
        except (ValueError, KeyError, TypeError):
            return Reply(400, {"success": False, "message": "Invalid JSON"})
        import json

        if any(len(json.dumps(m).encode()) > MAX_MESSAGE for m in batch):
            return Reply(400, {"success": False, "message": "Message size exceeds 32KB"})
        with self.lock:
            self.batches.append(len(request.body))
            for message in batch:
                self._accept(message)
        return Reply(200, {"success": True})

    def _write_key(self, request: Incoming) -> str:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return ""
        try:
            return base64.b64decode(auth[6:]).decode().partition(":")[0]
        except ValueError:
            return ""

    def _accept(self, message: dict[str, Any]) -> None:
        mid = message.get("messageId")
        if mid in self.seen:
            return
        kind = message.get("type")
        who = message.get("userId") or message.get("anonymousId")
        if not who or (kind == "track" and not message.get("event")) or \
                (kind == "group" and not message.get("groupId")):
            self.dropped.append(message)
            return
        if mid:
            self.seen.add(mid)
        if kind == "identify":
            self.users.setdefault(str(who), {}).update(message.get("traits") or {})
        elif kind == "group":
            self.groups.setdefault(str(message["groupId"]), {}).update(
                message.get("traits") or {})
            self.memberships.add((str(who), str(message["groupId"])))
        elif kind == "track":
            self.tracks.append(message)
        else:
            self.dropped.append(message)
