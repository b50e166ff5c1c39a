"""The console end to end in Debian's Chromium (Playwright from PyPI, never a downloaded
browser): one ``reflow serve --init --demo`` on a free loopback port with a fresh
REFLOW_HOME, one browser for the module.

A person signs in with the token the demo printed, creates a source, a destination, a
model and a sync through the wizard, runs it, watches it finish without reloading, and
opens a rejected record. Hostile values (``<script>`` in the data, in the sync's name and
in the destination's rejection reason) must show as text and never run. Screenshots of
each main page go to ``$REFLOW_ARTIFACTS`` (default ``tests/artifacts/console``).
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from reflow.config import Settings
from reflow.console import session as cookies

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
XSS_NAME = "<script>window.__pwned = 1</script>"
XSS_CONSTRAINT = "<script>window.__pwned = 2</script>"
XSS_LABEL = "<script>window.__pwned = 3</script> People"


@dataclass
class Served:
    base_url: str
    token: str
    home: Path
    console_url: str  # what the terminal tells a person to open


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _artifacts() -> Path:
    root = os.environ.get("REFLOW_ARTIFACTS")
    path = Path(root) / "console" if root else Path(__file__).parents[1] / "artifacts" / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            pytest.fail(f"reflow serve exited: {log.read_text(errors='replace')}")
        try:
            if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"reflow serve did not start: {log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("console-e2e")
    env = {**os.environ, "REFLOW_HOME": str(home / "state"), "REFLOW_LOG_LEVEL": "WARNING"}
    env.pop("REFLOW_DATABASE_URL", None)
    port = free_port()
    log = home / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "reflow.cli", "serve", "--init", "--demo", "--port", str(port)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, process, log)
        banner = log.read_text()
        token = re.search(r"workspace_token: (\S+)", banner)
        assert token, banner
        console_url = re.search(r"Reflow console: (\S+)", banner)
        assert console_url and console_url.group(1).startswith(f"http://127.0.0.1:{port}/")
        yield Served(base_url, token.group(1), home, console_url.group(1))
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def files(served: Served) -> tuple[Path, Path]:
    """A warehouse with a hostile name, a null key and a row the CRM refuses, and a CRM
    table whose CHECK constraint (named with a script tag) rejects that row."""
    warehouse, crm = served.home / "people.sqlite", served.home / "crm.sqlite"
    with sqlite3.connect(warehouse) as conn:
        conn.execute("CREATE TABLE people (id INTEGER, email TEXT, name TEXT)")
        rows = [(i, f"p{i}@example.com", f"Person {i}") for i in range(1, 41)]
        rows += [(41, "x@example.com", XSS_NAME), (42, "bad@example.com", "refused"),
                 (None, "nokey@example.com", "No key")]
        conn.executemany("INSERT INTO people VALUES (?, ?, ?)", rows)
    conn.close()
    with sqlite3.connect(crm) as conn:
        conn.execute(f"""CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, name TEXT,
            CONSTRAINT "{XSS_CONSTRAINT}" CHECK (name <> 'refused'))""")
    conn.close()
    return warehouse, crm


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(_artifacts() / f"{name}.png"), full_page=True)


def _no_script_ran(page: Page) -> None:
    assert page.evaluate("window.__pwned") is None


def _create_connection(page: Page, kind: str, name: str, path: Path) -> None:
    page.goto(f"/{kind}/new")
    page.get_by_role("link", name=re.compile("SQLite")).click()
    page.fill("#name", name)
    page.fill("#f-path", str(path))
    page.get_by_role("button", name="Test and save").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    expect(page.locator("h1 .badge")).to_contain_text("Connected")


def test_create_run_and_debug_a_sync(served: Served, browser: Browser,
                                     files: tuple[Path, Path]) -> None:
    warehouse, crm = files
    context = browser.new_context(base_url=served.base_url, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []  # CSP violations, script errors, failed loads
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2F$"))
    _shot(page, "01-signin")
    page.fill("#token", served.token)
    page.get_by_role("button", name="Sign in with token").click()
    expect(page).to_have_url(re.compile(r"/syncs$"))
    expect(page.get_by_role("link", name="Customers to the demo CRM")).to_be_visible()
    _shot(page, "02-syncs")

    _create_connection(page, "sources", "People warehouse", warehouse)
    _shot(page, "03-source")
    _create_connection(page, "destinations", "People CRM", crm)
    for _ in range(40):  # objects are listed in the background after the test
        if page.get_by_role("link", name="contacts").count():
            break
        page.wait_for_timeout(250)
        page.reload()
    _shot(page, "04-destination")

    page.goto("/models/new")
    page.select_option("#source_id", label="People warehouse (sqlite)")
    page.fill("#name", "People")
    page.fill("#query", "SELECT id, email, name FROM people")
    page.get_by_role("button", name="Preview 50 rows").click()
    expect(page.locator("table.preview")).to_contain_text(XSS_NAME)  # shown as text
    _no_script_ran(page)
    _shot(page, "05-model-preview")
    page.get_by_role("button", name="Save model").click()
    expect(page).to_have_url(re.compile(r"/models/\d+$"))

    _wizard(page, crm)
    _shot(page, "07-sync")

    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    page.evaluate("window.__samePage = true")  # survives only if the page never reloads
    expect(page.locator("#run-live")).to_have_attribute("data-status", "completed",
                                                        timeout=30_000)
    assert page.evaluate("window.__samePage") is True
    stages = page.locator(".stages")
    expect(stages).to_contain_text("43")  # extracted
    expect(page.get_by_role("link", name=re.compile("Rejected by the destination"))) \
        .to_contain_text("1")
    reason = page.locator("td.reason").first
    expect(reason).to_contain_text(XSS_CONSTRAINT)  # the destination's own message, as text
    page.locator("details summary").first.click()
    expect(page.locator("details pre").first).to_contain_text("refused")
    _no_script_ran(page)
    _shot(page, "08-run")

    page.get_by_role("link", name=re.compile("Invalid")).click()
    expect(page.locator("td.reason").first).to_contain_text("null")
    _no_script_ran(page)

    page.goto("/syncs")
    expect(page.locator("table.list")).to_contain_text(XSS_LABEL)
    _no_script_ran(page)
    _shot(page, "09-syncs-after")
    for path, name in (("/settings", "10-settings"), ("/models", "11-models")):
        page.goto(path)
        _shot(page, name)

    assert not problems, problems
    _demo_sync(page, served.home)
    phone = browser.new_context(base_url=served.base_url, viewport={"width": 390, "height": 844},
                                storage_state=context.storage_state())
    small = phone.new_page()
    small.goto("/syncs")
    expect(small.get_by_role("link", name="Customers to the demo CRM")).to_be_visible()
    _shot(small, "12-phone-syncs")
    assert small.evaluate("document.documentElement.scrollWidth") <= 400  # no sideways page
    phone.close()
    context.close()

    with sqlite3.connect(crm) as conn:
        assert conn.execute("SELECT count(*) FROM contacts").fetchone()[0] == 41
    conn.close()


def test_connect_link_page_uses_the_console_look(served: Served, browser: Browser) -> None:
    api = httpx.Client(base_url=served.base_url + "/api/v1",
                       headers={"Authorization": f"Bearer {served.token}"})
    link = api.post("/source_connect_links", json={"type": "postgres"}).json()["data"]
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(link["uri"])
    expect(page.get_by_role("heading", level=1)).to_have_text("Connect postgres")
    expect(page.locator('link[href="/static/console.css"]')).to_have_count(1)
    expect(page.locator('input[name="credentials.password"]')).to_have_attribute("type",
                                                                                 "password")
    _shot(page, "13-connect-link")
    context.close()


def test_the_console_works_without_javascript(served: Served, browser: Browser) -> None:
    """Read-only pages and plain forms: the console URL the terminal printed, sign in,
    land on the demo sync, run it, see the run."""
    context = browser.new_context(base_url=served.base_url, java_script_enabled=False)
    page = context.new_page()
    page.goto(served.console_url)
    page.fill("#token", served.token)
    page.get_by_role("button", name="Sign in with token").click()
    expect(page).to_have_url(re.compile(r"/syncs/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Customers to the demo CRM")
    expect(page.locator("dl.facts")).to_contain_text("customers")
    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+$"))
    expect(page.locator(".stages")).to_contain_text("Extracted")
    context.close()


def _demo_sync(page: Page, home: Path) -> None:
    """The demo sync run a few times with customers changed in between: the page the
    README shows (docs/img/console.png)."""
    page.goto("/syncs")
    page.get_by_role("link", name="Customers to the demo CRM").click()
    for plan, changed in (("pro", 0), ("free", 3000), ("starter", 1200), ("pro", 2200)):
        with sqlite3.connect(home / "state" / "demo-1" / "warehouse.sqlite") as conn:
            conn.execute("UPDATE customers SET plan = ? WHERE id <= ?", (plan, changed))
        conn.close()
        page.get_by_role("button", name="Run now").click()
        expect(page.locator("#run-live")).to_have_attribute("data-status", "completed",
                                                            timeout=30_000)
        page.go_back()
        page.reload()
    expect(page.locator("figure.chart svg rect.bar")).to_have_count(4)
    page.set_viewport_size({"width": 1100, "height": 900})
    page.screenshot(path=str(_artifacts() / "00-readme.png"))
    page.set_viewport_size({"width": 1280, "height": 860})


def _wizard(page: Page, crm: Path) -> None:
    page.goto("/syncs/new")
    page.select_option("#source_id", label="People warehouse (sqlite)")
    page.get_by_role("button", name="Next").click()
    page.select_option("#source_object", label="Model · People")
    page.get_by_role("button", name="Next").click()
    page.select_option("#destination_id", label="People CRM (sqlite)")
    page.get_by_role("button", name="Next").click()
    _choose_object(page, "contacts")
    # Auto-matched by name; the primary key is the sync key.
    expect(page.locator("select[name=kind_0]")).to_have_value("column")
    expect(page.locator("input[name=key][value=id]")).to_be_checked()
    page.fill("#label", XSS_LABEL)
    page.get_by_role("button", name="Dry run").click()
    dry = page.locator(".dry-run")
    # The warehouse (see ``files``): 43 rows, one without a key; the CRM refuses a row
    # only when written, which a dry run never does.
    expect(dry.locator('[data-count="rows"]')).to_have_text("43")
    expect(dry.locator('[data-count="creates_or_updates"] strong')).to_have_text("42")
    expect(dry.locator('[data-count="deletes"] strong')).to_have_text("0")
    expect(dry.locator('[data-count="invalid"]')).to_have_text("1")
    expect(dry.locator("table.invalid-preview")).to_contain_text("Matching ID id is null")
    expect(dry.locator("table.sample-records tbody tr")).to_have_count(5)
    with sqlite3.connect(crm) as conn:  # nothing written by the dry run
        assert conn.execute("SELECT count(*) FROM contacts").fetchone()[0] == 0
    conn.close()
    _no_script_ran(page)
    _shot(page, "06-wizard-dry-run")
    page.get_by_role("button", name="Save sync").click()
    expect(page).to_have_url(re.compile(r"/syncs/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(XSS_LABEL)


def _choose_object(page: Page, name: str) -> None:
    """Objects load in the background after the destination's test; the wizard says so."""
    for _ in range(40):
        if page.locator(f"#destination_object option[value={name}]").count():
            page.select_option("#destination_object", name)
            page.get_by_role("button", name="Next").click()
            return
        page.wait_for_timeout(250)
        page.get_by_role("button", name="Next").click()
    pytest.fail(f"destination object {name} never appeared")


def _sign_in(page: Page, token: str) -> None:
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in with token").click()


def _expire_session(context: BrowserContext, served: Served) -> None:
    """The browser's session cookie, re-sealed as if it had been issued too long ago."""
    secret = Settings(home=served.home / "state").resolved_secret_key()
    cookie = next(c for c in context.cookies() if c["name"] == cookies.COOKIE)
    state = cookies.decode(secret, cookie["value"])
    assert state is not None
    stale = cookies.encode(secret, state, at=time.time() - cookies.MAX_AGE_SECONDS - 60)
    context.add_cookies([{"name": cookies.COOKIE, "value": stale, "url": served.base_url}])


def test_edit_alert_delete_and_an_expired_session(served: Served, browser: Browser) -> None:
    """Edit the demo sync's schedule, be refused deleting the source it reads (inline),
    come back after the session expired to the page asked for, add an alert in settings,
    then delete the sync."""
    context = browser.new_context(base_url=served.base_url, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(served.console_url)
    _sign_in(page, served.token)
    sync_url = page.url
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Edit sync")
    expect(page.locator("#operation")).to_have_value("upsert")
    expect(page.locator("input[name=key][value=id]")).to_be_checked()
    page.select_option("#frequency", "daily")
    page.fill("#hour", "6")
    page.fill("#minute", "30")
    _shot(page, "14-sync-edit")
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(sync_url)
    expect(page.locator("dl.facts")).to_contain_text("Daily at 06:30 UTC")

    page.locator("dl.facts").get_by_role("link", name="Demo warehouse").click()
    page.check("input[name=confirm]")
    page.get_by_role("button", name="Delete source").click()
    expect(page.locator("#delete-error")).to_contain_text("is used by syncs")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Demo warehouse")
    _shot(page, "15-delete-refused")

    _expire_session(context, served)
    page.goto(sync_url + "?page=1")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fsyncs%2F\d+%3Fpage%3D1$"))
    _sign_in(page, served.token)
    expect(page).to_have_url(sync_url + "?page=1")

    page.goto("/settings#alerts")
    page.select_option("#al-sync", label="Customers to the demo CRM")
    page.select_option("#al-type", "InvalidRecordPercentAlertConfiguration")
    page.fill("#al-threshold", "5")
    page.get_by_role("button", name="Add alert").click()
    expect(page.locator("table.configured-alerts")).to_contain_text("threshold 5")
    _shot(page, "16-settings-alerts")

    page.goto(sync_url)
    page.check("input[name=confirm]")
    page.get_by_role("button", name="Delete sync").click()
    expect(page).to_have_url(re.compile(r"/syncs$"))
    expect(page.get_by_role("link", name="Customers to the demo CRM")).to_have_count(0)
    context.close()
