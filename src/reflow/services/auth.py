"""Issuing API tokens, and resolving a bearer token to what it may see.

A token is looked up by its hash (one indexed statement). What a good token resolved
to is remembered for ``CACHE_SECONDS`` in this process, keyed by the hash (never the
token), so a client polling the API costs no statement and no worker thread per
request for its token (``cached``, called on the event loop by ``api/edge.py``).

Revocation still takes effect promptly:

- in this process at once: a session that deletes or changes an ``api_tokens`` row
  (``session.delete``, an attribute change, or a bulk ``DELETE``/``UPDATE`` statement:
  revoking a key, deleting a user or a workspace) empties the cache when it commits,
  and a lookup that was under way while it committed does not put its older answer
  back;
- in every other process (``reflow serve --workers N``, ``reflow token revoke`` from
  the command line, another host on the same PostgreSQL) within ``CACHE_SECONDS``:
  processes share no memory and a shared signal would cost a statement per request,
  the very cost the cache removes.

An unknown token is never remembered: a token created a moment ago (by another
process) works at once, and a flood of made-up tokens cannot fill the memory. Each
costs one indexed lookup, no more than a good token's first request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Delete, Engine, Update, event, select
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from reflow.crypto import hash_token, new_token
from reflow.db.tables import ApiToken
from reflow.errors import Unauthorized


@dataclass(frozen=True)
class Principal:
    kind: str  # "workspace" | "organization"
    organization_id: int
    workspace_id: int | None
    #: The user a personal access token belongs to (None: workspace key, or the
    #: organization token ``reflow init`` printed before its owner was materialized).
    user_id: int | None = None


MISSING_TOKEN = "missing API token: send Authorization: Bearer <token>"

#: How long another process may still accept a revoked token.
CACHE_SECONDS = 1.0
#: Distinct good tokens remembered at once (a few per client; the oldest go first).
CACHE_SIZE = 1024


class PrincipalCache:
    """Token hash -> (expiry, principal). Used from the event loop and worker threads:
    each operation is a single dict operation (atomic under the GIL)."""

    def __init__(self, *, seconds: float = CACHE_SECONDS, size: int = CACHE_SIZE) -> None:
        self.seconds, self.size = seconds, size
        self._entries: dict[str, tuple[float, Principal]] = {}
        #: Bumped by ``clear``; a lookup that began before it does not store its answer.
        self.generation = 0

    def get(self, key: str) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: str, principal: Principal, *, generation: int) -> None:
        if generation != self.generation:
            return
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries), key), None)  # the oldest
        self._entries[key] = (time.monotonic() + self.seconds, principal)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()


#: One cache per state store (a process that opens two, as tests do, keeps them apart).
_CACHES: WeakKeyDictionary[Engine, PrincipalCache] = WeakKeyDictionary()


def _cache(engine: Engine) -> PrincipalCache:
    cache = _CACHES.get(engine)
    return cache if cache is not None else _CACHES.setdefault(engine, PrincipalCache())


def cached(engine: Engine, token: str) -> Principal | None:
    """The principal of a token looked up less than ``CACHE_SECONDS`` ago; no I/O."""
    return _cache(engine).get(hash_token(token))


def authenticate(session: Session, *, token: str | None) -> Principal:
    if not token:
        raise Unauthorized(MISSING_TOKEN)
    key, cache = hash_token(token), _cache(session.get_bind().engine)
    principal = cache.get(key)
    if principal is not None:
        return principal
    generation = cache.generation
    row = session.execute(
        select(ApiToken.kind, ApiToken.organization_id, ApiToken.workspace_id, ApiToken.user_id)
        .where(ApiToken.token_hash == key)
    ).first()
    if row is None:
        raise Unauthorized("invalid API token")
    principal = Principal(*row)
    cache.put(key, principal, generation=generation)
    return principal


# -- forgetting on revocation ----------------------------------------------------------

_CHANGED = "reflow_api_tokens_changed"


@event.listens_for(Session, "after_flush")
def _note_changed_rows(session: Session, _flush: UOWTransaction) -> None:
    if any(isinstance(obj, ApiToken) for obj in (*session.deleted, *session.dirty)):
        session.info[_CHANGED] = True


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_statements(state: ORMExecuteState) -> None:
    statement: Any = state.statement
    if isinstance(statement, Delete | Update) and getattr(
            statement.table, "name", None) == ApiToken.__tablename__:
        state.session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _forget_on_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        for cache in list(_CACHES.values()):
            cache.clear()


def issue_token(
    session: Session, *, kind: str, organization_id: int, workspace_id: int | None = None
) -> str:
    """A new token; only its hash is stored, so this is the one time it is seen."""
    token = new_token()
    session.add(
        ApiToken(
            kind=kind,
            organization_id=organization_id,
            workspace_id=workspace_id,
            token_hash=hash_token(token),
        )
    )
    session.flush()
    return token
