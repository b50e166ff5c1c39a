"""A Braze workspace as a real HTTP server on loopback, for the ``braze`` connector's tests.
Users, their attributes, events and purchases live in memory, so a test reads back
exactly what arrived.

Written from Braze's public references (pages followed):

* Track users, ``POST /users/track``:
  https://braze.com/docs/en/api/endpoints/user_data/post_user_track — ``Authorization:
  Bearer <REST API key>``; ``attributes``, ``events``, ``purchases`` arrays; each object
  identifies one user by ``external_id``, ``user_alias`` (``alias_name`` +
  ``alias_label``), ``braze_id`` or ``email``; ``_update_existing_only``; a null
  attribute removes it; events need ``name`` and ``time``, purchases ``product_id``,
  ``currency``, ``price`` and ``time``.
* Rate limits, https://braze.com/docs/api/api_limits — /users/track: 3,000 requests per
  three seconds and at most 75 objects (attributes, events and purchases together) a
  request; /users/delete: 20,000 requests a minute (shared with /users/alias/* etc.),
  50 identifiers a request; headers ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``,
  ``X-RateLimit-Reset`` (Unix seconds), 429 when exceeded.
* Errors and responses, https://braze.com/docs/api/errors — success is ``{"message":
  "success"}``, with non-fatal ("minor") errors ``{"message": "success", "errors":
  [...]}`` where the objects not named in ``errors`` were processed; a fatal error is
  ``{"message": <fatal error message>, "errors": [...]}`` with a 4xx. /users/track's
  minor errors name the object: ``{"type", "input_array", "index"}``.
* Delete users, ``POST /users/delete``: ``external_ids``, ``user_aliases``,
  ``email_addresses``; answers ``{"deleted": n, "message": "success"}``.

Simplifications: the fake's own wording where Braze's exact text is not published (the
75-object and 50-identifier messages), and the window is fixed, not sliding.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.fakes._server import Blips, FakeServer, Incoming, Reply

MAX_OBJECTS = 75
MAX_DELETE = 50
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email")


@dataclass
class User:
    external_id: str | None = None
    alias: tuple[str, str] | None = None
    email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)


class BrazeFake(FakeServer):
    def __init__(self, *, track_limit: tuple[int, float] | None = None) -> None:
        super().__init__()
        self.lock = threading.RLock()
        self.api_keys = {"braze-rest-key"}
        self.users: list[User] = []
        #: (requests, seconds) on /users/track; Braze's is (3000, 3.0). None: unlimited.
        self.track_limit = track_limit
        self.blips = Blips()
        self.requests: list[tuple[str, int]] = []  # (path, objects carried)
        self._window: tuple[float, int] = (0.0, 0)

    def credentials(self, **overrides: Any) -> dict[str, Any]:
        return {"api_key": "braze-rest-key", "rest_endpoint": self.url, **overrides}

    def by_external_id(self) -> dict[str, User]:
        with self.lock:
            return {u.external_id: u for u in self.users if u.external_id is not None}

    def clear(self) -> None:
        with self.lock:
            self.users.clear()
            self.requests.clear()

    # -- HTTP ------------------------------------------------------------------------------
    def route(self, request: Incoming) -> Reply:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if key not in self.api_keys:
            return Reply(401, {"message": "Invalid API key: " + (key[:4] + "…" if key else "")})
        headers = self._limit(request.path)
        if headers is None:
            return Reply(429, {"message": "API rate limit exceeded"}, self._headers())
        status = self.blips.take()
        if status is not None:
            return Reply(status, {"message": "Internal Server Error"})
        with self.lock:
            if request.path == "/users/track" and request.method == "POST":
                status, body = self._track(request.json() or {})
            elif request.path == "/users/delete" and request.method == "POST":
                status, body = self._delete(request.json() or {})
            else:
                status, body = 404, {"message": f"Not found: {request.path}"}
        return Reply(status, body, headers)

    def _limit(self, path: str) -> dict[str, str] | None:
        if path != "/users/track" or self.track_limit is None:
            return self._headers()
        limit, seconds = self.track_limit
        with self.lock:
            start, used = self._window
            now = time.time()
            if now - start >= seconds:
                start, used = now, 0
            if used >= limit:
                return None
            self._window = (start, used + 1)
        return self._headers()

    def _headers(self) -> dict[str, str]:
        limit, seconds = self.track_limit or (3000, 3.0)
        start, used = self._window
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, limit - used)),
                "X-RateLimit-Reset": str(int(start + seconds) + 1)}

    # -- /users/track ----------------------------------------------------------------------
    def _track(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        arrays = {name: body.get(name) or [] for name in ("attributes", "events", "purchases")}
        total = sum(len(items) for items in arrays.values())
        if total > MAX_OBJECTS:
            return 400, {"message": f"Too many objects: attributes, events and purchases may "
                         f"hold {MAX_OBJECTS} objects together in one request, got {total}"}
        self.requests.append(("/users/track", total))
        errors: list[dict[str, Any]] = []
        processed = {name: 0 for name in arrays}
        for name, items in arrays.items():
            for index, item in enumerate(items):
                problem = self._apply(name, item)
                if problem:
                    errors.append({"type": problem, "input_array": name, "index": index})
                else:
                    processed[name] += 1
        out: dict[str, Any] = {f"{k}_processed": v for k, v in processed.items() if arrays[k]}
        if total and not any(processed.values()):
            return 400, {"message": "Valid data must be provided in the 'attributes', 'events',"
                         " or 'purchases' fields.", "errors": errors}
        out["message"] = "success"
        if errors:
            out["errors"] = errors
        return 201, out

    def _apply(self, kind: str, item: dict[str, Any]) -> str | None:
        if not any(item.get(k) for k in _IDENTIFIERS):
            return "'external_id', 'braze_id', 'user_alias' or 'email' is required"
        if item.get("email") is not None and not _EMAIL.fullmatch(str(item["email"])):
            return f"Invalid 'email' field: {item['email']!r} is not a valid email address"
        if kind == "events" and not (item.get("name") and item.get("time")):
            return "'name' and 'time' are required for events"
        if kind == "purchases" and not all(item.get(k) is not None for k in
                                           ("product_id", "currency", "price", "time")):
            return "'product_id', 'currency', 'price' and 'time' are required for purchases"
        user = self._user(item, create=not item.get("_update_existing_only"))
        if user is None:
            return None  # update-only and unknown: Braze skips it silently
        if kind == "attributes":
            for name, value in item.items():
                if name in ("external_id", "user_alias", "braze_id", "_update_existing_only"):
                    continue
                if value is None:
                    user.attributes.pop(name, None)
                else:
                    user.attributes[name] = value
        else:
            getattr(user, kind).append({k: v for k, v in item.items() if k not in _IDENTIFIERS})
        return None

    def _user(self, item: dict[str, Any], *, create: bool) -> User | None:
        alias = item.get("user_alias")
        key = (alias["alias_label"], alias["alias_name"]) if isinstance(alias, dict) else None
        for user in self.users:
            if item.get("external_id") is not None and user.external_id == str(item["external_id"]):
                return user
            if key is not None and user.alias == key:
                return user
            if item.get("external_id") is None and key is None and item.get("email") \
                    and user.email == item["email"]:
                return user
        if not create:
            return None
        ext = item.get("external_id")
        user = User(None if ext is None else str(ext), key, item.get("email"))
        self.users.append(user)
        return user

    def _delete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ids = [str(i) for i in body.get("external_ids") or []]
        aliases = [(a["alias_label"], a["alias_name"]) for a in body.get("user_aliases") or []]
        emails = list(body.get("email_addresses") or [])
        if len(ids) + len(aliases) + len(emails) > MAX_DELETE:
            return 400, {"message": f"At most {MAX_DELETE} users can be deleted in one request"}
        self.requests.append(("/users/delete", len(ids) + len(aliases) + len(emails)))
        before = len(self.users)
        self.users = [u for u in self.users if u.external_id not in ids
                      and u.alias not in aliases and u.email not in emails]
        return 201, {"deleted": before - len(self.users), "message": "success"}
