"""Console fixtures for the tests without a browser: one in-process app over a fresh
store with the demo workspace, shared by the module (the browser tests start their own
``reflow serve`` in test_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reflow.api.app import create_app
from reflow.config import Settings
from reflow.jobs.executor import make_executor
from reflow.runtime import Runtime
from reflow.services import demo
from reflow.services.demo import DemoResult


@dataclass
class App:
    runtime: Runtime
    demo: DemoResult
    client: TestClient

    def signed_in(self, token: str | None = None) -> TestClient:
        """A fresh client signed in with a workspace API key (the demo's by default)."""
        client = TestClient(self.client.app, base_url="http://testserver")
        sign_in(client, token or self.demo.workspace_token)
        return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: TestClient, token: str, next_path: str = "/syncs") -> None:
    page = client.get(f"/signin?next={next_path}")
    answer = client.post("/signin", data={"csrf": csrf_of(page.text), "next": next_path,
                                          "token": token}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == next_path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    home: Path = tmp_path_factory.mktemp("console-home")
    runtime = Runtime.from_settings(Settings(home=home, secret_key="console-test-secret"))
    seeded = demo.seed(runtime, customers=50)
    runtime.executor = make_executor(runtime)
    with TestClient(create_app(runtime), base_url="http://testserver") as client:
        yield App(runtime, seeded, client)
