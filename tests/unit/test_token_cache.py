"""The token cache of ``services/auth.py``: a good token is looked up once a second,
never an unknown one; whatever deletes or changes a token in this process empties the
cache when it commits, and a lookup that raced with that commit does not put its older
answer back. (Across processes the bound is ``CACHE_SECONDS``: tests/api/
test_token_revocation.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import delete, event, select

from reflow.config import Settings
from reflow.crypto import hash_token
from reflow.db.tables import ApiToken, Workspace
from reflow.db.tables_org import User
from reflow.errors import Unauthorized
from reflow.runtime import Runtime
from reflow.services import api_keys, auth, organization, tokens
from reflow.services.bootstrap import InitResult, initialize


@dataclass
class Store:
    runtime: Runtime
    init: InitResult
    statements: list[str]

    def authenticate(self, token: str) -> auth.Principal:
        with self.runtime.sessions() as session:
            return auth.authenticate(session, token=token)

    def lookups(self) -> int:
        return sum("api_tokens" in s for s in self.statements)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    runtime = Runtime.from_settings(Settings(home=tmp_path, secret_key="k"))
    init = initialize(runtime.engine)
    statements: list[str] = []
    event.listen(runtime.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: statements.append(sql))
    yield Store(runtime, init, statements)
    runtime.engine.dispose()


def test_a_good_token_is_looked_up_once(store: Store) -> None:
    first = store.authenticate(store.init.workspace_token)
    assert store.authenticate(store.init.workspace_token) == first
    assert auth.cached(store.runtime.engine, store.init.workspace_token) == first
    assert first.workspace_id == store.init.workspace_id
    assert store.lookups() == 1


def test_an_unknown_token_is_looked_up_every_time_and_never_remembered(store: Store) -> None:
    for _ in range(3):
        with pytest.raises(Unauthorized):
            store.authenticate("made-up")
    assert store.lookups() == 3
    assert auth.cached(store.runtime.engine, "made-up") is None


def test_a_token_created_after_a_refusal_works_at_once(store: Store) -> None:
    with store.runtime.session() as session:
        _, token = tokens.create_workspace_token(session, workspace_id=store.init.workspace_id)
    assert store.authenticate(token).workspace_id == store.init.workspace_id


def test_revoking_a_key_in_this_process_takes_effect_at_commit(store: Store) -> None:
    with store.runtime.session() as session:
        workspace = session.get(Workspace, store.init.workspace_id)
        assert workspace is not None
        key = api_keys.issue(session, workspace=workspace)
    store.authenticate(key)
    assert auth.cached(store.runtime.engine, key) is not None
    with store.runtime.sessions() as session:
        key_id = session.scalar(select(ApiToken.id).where(
            ApiToken.token_hash == hash_token(key)))
        assert key_id is not None
        api_keys.revoke(session, workspace_id=store.init.workspace_id, token_id=key_id)
        assert store.authenticate(key)  # not committed yet: still valid
        session.commit()
    with pytest.raises(Unauthorized):
        store.authenticate(key)


def test_a_revocation_rolled_back_leaves_the_token_working(store: Store) -> None:
    token = store.init.workspace_token
    store.authenticate(token)
    with store.runtime.sessions() as session:
        session.execute(delete(ApiToken).where(ApiToken.token_hash == hash_token(token)))
        session.rollback()
    assert store.authenticate(token).kind == "workspace"


def test_bulk_deletes_and_updates_of_tokens_empty_the_cache(store: Store) -> None:
    token = store.init.organization_token
    principal = store.authenticate(token)
    with store.runtime.session() as session:  # the owner materialised: user_id changes
        user = organization.acting_user(session, principal=principal)
    assert store.authenticate(token).user_id == user.id
    with store.runtime.session() as session:
        admin = session.get(User, user.id)
        assert admin is not None
        session.add(User(organization_id=admin.organization_id, email="b@x", role="admin"))
        session.flush()
        organization.delete_user(session, user=admin)  # DELETE FROM api_tokens WHERE ...
    with pytest.raises(Unauthorized):
        store.authenticate(token)


def test_a_lookup_that_raced_with_a_revocation_is_not_remembered(store: Store) -> None:
    cache = auth.PrincipalCache()
    principal = auth.Principal("workspace", 1, 1)
    before = cache.generation
    cache.clear()  # a revocation committed while the lookup was reading
    cache.put("hash", principal, generation=before)
    assert cache.get("hash") is None
    cache.put("hash", principal, generation=cache.generation)
    assert cache.get("hash") == principal


def test_an_entry_expires_and_the_oldest_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    cache = auth.PrincipalCache(seconds=1.0, size=2)
    principals = [auth.Principal("workspace", 1, i) for i in range(3)]
    for i, principal in enumerate(principals):
        cache.put(f"h{i}", principal, generation=cache.generation)
    assert cache.get("h0") is None  # evicted: the cache holds two
    assert cache.get("h1") == principals[1] and cache.get("h2") == principals[2]
    now[0] += 1.0
    assert cache.get("h1") is None and cache.get("h2") is None
