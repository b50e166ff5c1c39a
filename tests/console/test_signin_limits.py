"""Sign-in rate limits (console/throttle.py): failures counted per address, per account
and per pair, in bounded memory; and an expired session back to the page asked for."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from reflow.console.throttle import RULES, SignInThrottle
from reflow.db.tables import ApiToken
from reflow.services import organization
from tests.console.conftest import App, csrf_of

PASSWORD = "a correct long password"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_counts_within_its_window_and_stays_bounded() -> None:
    clock = Clock()
    throttle = SignInThrottle(window=60, max_keys=50, clock=clock)
    keys = SignInThrottle.keys("10.0.0.1", "Ann@example.com")
    pair_limit = next(r.limit for r in RULES if r.prefix == "pair")
    for _ in range(pair_limit):
        assert throttle.retry_after(keys) is None
        throttle.failed(keys)
    assert throttle.retry_after(keys) == 61
    assert throttle.retry_after(SignInThrottle.keys("10.0.0.2", "ann@example.com")) is None
    clock.now += 30
    assert throttle.retry_after(keys) == 31
    clock.now += 31
    assert throttle.retry_after(keys) is None  # the window moved on
    for i in range(500):  # a spray of addresses and accounts
        throttle.failed(SignInThrottle.keys(f"10.1.{i // 250}.{i % 250}", f"u{i}@example.com"))
    assert len(throttle) == 50


def test_wrong_passwords_are_refused_for_a_while_then_a_right_one_works(app: App) -> None:
    with app.runtime.session() as s:
        org_id = s.get(ApiToken, 1).organization_id  # type: ignore[union-attr]
        user, _ = organization.create_user(s, organization_id=org_id,
                                           email="limits@example.com", role="admin")
        organization.set_password(s, user=user, password=PASSWORD)
    clock = Clock()
    app.client.app.state.signin_throttle = SignInThrottle(clock=clock)  # type: ignore[attr-defined]
    try:
        client = TestClient(app.client.app)
        page = client.get("/signin?next=/models").text

        def attempt(password: str, email: str = "limits@example.com") -> httpx.Response:
            return client.post("/signin", data={"csrf": csrf_of(page), "next": "/models",
                                                "email": email, "password": password},
                               follow_redirects=False)

        for _ in range(5):
            assert attempt("not the password").status_code == 401
        refused = attempt(PASSWORD)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "901"
        assert "Too many failed sign-ins; try again in 16 min" in refused.text
        other = attempt("also wrong", email="someone@example.com")
        assert other.status_code == 401  # another account
        clock.now += 15 * 60 + 1
        answer = attempt(PASSWORD)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/models"
    finally:
        app.client.app.state.signin_throttle = None  # type: ignore[attr-defined]


def test_the_sign_in_address_goes_straight_on_when_signed_in(app: App) -> None:
    client = app.signed_in()
    target = f"/syncs/{app.demo.sync_id}"
    answer = client.get(f"/signin?next={target}", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == target
    outside = client.get("/signin?next=//evil.example/", follow_redirects=False)
    assert outside.headers["location"] == "/syncs"  # never another site
    fresh = TestClient(app.client.app)
    assert fresh.get(f"/signin?next={target}", follow_redirects=False).status_code == 200
