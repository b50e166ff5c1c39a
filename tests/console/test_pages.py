"""The console without a browser (FastAPI's TestClient over one in-process app and a
fresh store): cookie flags, CSRF, escaping, workspace isolation, expiry, inline form
errors, password sign-in, and that pages carry their content without JavaScript."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from reflow.console import session as cookies
from reflow.db.tables import ApiToken, SyncRun, SyncRunRecord
from reflow.services import organization, runs, syncs
from tests.console.conftest import App, csrf_of, sign_in

SCRIPT = "<script>window.__pwned = 1</script>"


def _runs(app: App, sync_id: int) -> int:
    with app.runtime.sessions() as s:
        return s.scalar(select(func.count()).select_from(SyncRun)
                        .where(SyncRun.sync_id == sync_id)) or 0


def _set_cookie(response: object) -> str:
    return next(v for k, v in response.headers.multi_items()  # type: ignore[attr-defined]
                if k == "set-cookie" and v.startswith(cookies.COOKIE))


def test_root_asks_for_sign_in_then_returns_to_the_page(app: App) -> None:
    client = TestClient(app.client.app)
    answer = client.get(f"/syncs/{app.demo.sync_id}", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/signin?next=%2Fsyncs%2F{app.demo.sync_id}"
    sign_in(client, app.demo.workspace_token, f"/syncs/{app.demo.sync_id}")
    assert client.get("/", follow_redirects=False).headers["location"] == "/syncs"


def test_session_cookie_flags(app: App) -> None:
    client = TestClient(app.client.app)
    page = client.get("/signin")
    answer = client.post("/signin", data={"csrf": csrf_of(page.text), "next": "/syncs",
                                          "token": app.demo.workspace_token},
                         follow_redirects=False)
    flags = _set_cookie(answer).lower()
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP on loopback
    assert app.demo.workspace_token not in _set_cookie(answer)  # the token is never in it
    https = TestClient(app.client.app, base_url="https://testserver")
    page = https.get("/signin")
    answer = https.post("/signin", data={"csrf": csrf_of(page.text), "next": "/syncs",
                                         "token": app.demo.workspace_token},
                        follow_redirects=False)
    assert "; secure" in _set_cookie(answer).lower()


def test_forms_without_the_csrf_token_change_nothing(app: App) -> None:
    client = app.signed_in()
    before = _runs(app, app.demo.sync_id)
    for data in ({}, {"csrf": "forged"}):
        answer = client.post(f"/syncs/{app.demo.sync_id}/trigger", data=data)
        assert answer.status_code == 403
        assert "text/html" in answer.headers["content-type"]
        assert "did not come from this console" in answer.text
    assert _runs(app, app.demo.sync_id) == before
    # Sign-in has its own double-submit token: a post from another site is refused.
    stranger = TestClient(app.client.app)
    answer = stranger.post("/signin", data={"csrf": "x", "token": app.demo.workspace_token},
                           follow_redirects=False)
    assert answer.status_code == 400 and cookies.COOKIE not in answer.headers.get("set-cookie", "")


def test_wrong_token_shows_the_error_beside_the_field(app: App) -> None:
    client = TestClient(app.client.app)
    page = client.get("/signin")
    answer = client.post("/signin", data={"csrf": csrf_of(page.text), "token": "nope"})
    assert answer.status_code == 401
    assert re.search(r'id="token"[^>]*aria-invalid="true"', answer.text)
    assert 'id="err-token"' in answer.text and "invalid API token" in answer.text


def test_next_never_leaves_the_site(app: App) -> None:
    client = TestClient(app.client.app)
    page = client.get("/signin?next=//evil.example/x")
    answer = client.post("/signin", data={"csrf": csrf_of(page.text), "next": "//evil.example/x",
                                          "token": app.demo.workspace_token},
                         follow_redirects=False)
    assert answer.headers["location"] == "/syncs"


def test_expired_session_signs_in_again_and_returns(app: App) -> None:
    client = TestClient(app.client.app)
    sign_in(client, app.demo.workspace_token)
    state = cookies.decode(app.runtime.settings.resolved_secret_key(),
                           client.cookies.get(cookies.COOKIE))
    assert state is not None
    stale = cookies.encode(app.runtime.settings.resolved_secret_key(), state,
                           at=time.time() - cookies.MAX_AGE_SECONDS - 60)
    client.cookies.set(cookies.COOKIE, stale)
    target = f"/syncs/{app.demo.sync_id}"
    answer = client.get(target, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin?next=")
    sign_in(client, app.demo.workspace_token, target)
    assert client.get(target).status_code == 200


def test_a_revoked_key_ends_its_console_session(app: App) -> None:
    owner = app.signed_in()
    answer = owner.post("/settings/keys", data={"csrf": csrf_of(owner.get("/settings").text)})
    key = re.search(r'class="secret-once">([^<]+)<', answer.text)
    assert key, answer.text
    other = app.signed_in(key.group(1))
    assert other.get("/syncs").status_code == 200
    with app.runtime.sessions() as s:
        token_id = max(s.scalars(select(ApiToken.id).where(ApiToken.kind == "workspace")))
    csrf = csrf_of(owner.get("/settings").text)
    owner.post(f"/settings/keys/{token_id}/revoke", data={"csrf": csrf})
    assert other.get("/syncs", follow_redirects=False).status_code == 303
    assert owner.get("/syncs").status_code == 200  # the demo's own key still works


def test_another_workspace_sees_none_of_these_objects(app: App) -> None:
    with app.runtime.session() as s:
        other = organization.create_organization(s, name="Elsewhere", vault=app.runtime.vault)
    client = app.signed_in(other.workspace_token)
    listing = client.get("/syncs")
    assert listing.status_code == 200 and "Customers to the demo CRM" not in listing.text
    with app.runtime.sessions() as s:
        run_id = s.scalar(select(func.max(SyncRun.id)))
    paths = [f"/syncs/{app.demo.sync_id}", f"/sources/{app.demo.source_id}",
             f"/destinations/{app.demo.destination_id}", f"/models/{app.demo.model_id}"]
    if run_id is not None:
        paths += [f"/runs/{run_id}", f"/runs/{run_id}/failures.csv"]
    for path in paths:
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "text/html" in answer.headers["content-type"]
    before = _runs(app, app.demo.sync_id)
    csrf = csrf_of(client.get("/settings").text)
    assert client.post(f"/syncs/{app.demo.sync_id}/trigger", data={"csrf": csrf}).status_code == 404
    assert _runs(app, app.demo.sync_id) == before


def _hostile_run(app: App) -> int:
    """A finished run of the demo sync with a rejected record whose reason and payload
    carry a script tag (as a destination's message could)."""
    with app.runtime.session() as s:
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
        syncs.update(s, sync=sync, vault=app.runtime.vault, body={"label": f"{SCRIPT} demo"})
        run = SyncRun(workspace_id=sync.workspace_id, sync_id=sync.id, status="completed",
                      source_record_count=2, records_processed=2, records_updated=1,
                      records_failed=1)
        s.add(run)
        s.flush()
        s.add(SyncRunRecord(run_id=run.id, identifier="=HYPERLINK(1)", status="rejected",
                            status_message=f"refused: {SCRIPT}", record_payload={"name": SCRIPT}))
        return run.id


def test_values_from_users_and_warehouses_are_escaped(app: App) -> None:
    run_id = _hostile_run(app)
    client = app.signed_in()
    for path in ("/syncs", f"/syncs/{app.demo.sync_id}", f"/runs/{run_id}",
                 f"/runs/{run_id}/live"):
        html = client.get(path).text
        assert SCRIPT not in html, path
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html, path
    html = client.get(f"/runs/{run_id}").text
    assert "refused: &lt;script&gt;" in html
    assert "\\u003cscript\\u003e" in html  # the payload's JSON is escaped too
    csv = client.get(f"/runs/{run_id}/failures.csv")
    assert csv.headers["content-type"].startswith("text/csv") and "refused:" in csv.text
    assert "'=HYPERLINK(1)" in csv.text  # never a live spreadsheet formula
    with app.runtime.session() as s:
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
        syncs.update(s, sync=sync, vault=app.runtime.vault,
                     body={"label": "Customers to the demo CRM"})


def test_pages_carry_their_content_without_javascript(app: App) -> None:
    client = app.signed_in()
    with app.runtime.session() as s:
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
        run = runs.trigger(s, sync=sync)
        run.status = "working"
        run.source_record_count = 123
        run_id = run.id
    try:
        html = client.get(f"/runs/{run_id}").text
        assert 'hx-trigger="every 2s"' in html  # enhancement only: polls while active
        assert "123" in html and "Extracted" in html  # the counts are in the HTML itself
        sync_page = client.get(f"/syncs/{app.demo.sync_id}").text
        assert "<svg" in sync_page and f'href="/runs/{run_id}"' in sync_page
        assert f'action="/syncs/{app.demo.sync_id}/trigger"' in sync_page  # a plain form
    finally:
        with app.runtime.session() as s:
            run = s.get(SyncRun, run_id)
            assert run is not None
            run.status, run.completed_at = "completed", run.created_at
    html = client.get(f"/runs/{run_id}/live").text
    assert "hx-trigger" not in html  # ended: the fragment stops polling
    assert client.get("/static/vendor/htmx.min.js").status_code == 200
    assert client.get("/static/../routes.py").status_code == 404


def test_a_bad_connection_form_shows_the_error_next_to_its_field(app: App) -> None:
    client = app.signed_in()
    csrf = csrf_of(client.get("/sources/new?type=sqlite").text)
    answer = client.post("/sources/new", data={"csrf": csrf, "type": "sqlite", "name": "Broken"})
    assert answer.status_code == 400
    assert re.search(r'<p class="field-error" id="err-path" role="alert">[^<]*path[^<]*</p>',
                     answer.text), answer.text
    assert "Broken" not in client.get("/sources").text  # a failing connection is not kept


def test_a_bad_query_shows_the_database_message_beside_the_editor(app: App) -> None:
    client = app.signed_in()
    csrf = csrf_of(client.get("/models/new").text)
    answer = client.post("/models/new", data={
        "csrf": csrf, "source_id": str(app.demo.source_id), "name": "Bad",
        "query": "SELECT nope FROM nowhere", "action": "preview"})
    assert answer.status_code == 400
    assert 'id="err-query"' in answer.text and "nowhere" in answer.text


def test_invited_user_signs_in_with_a_password_and_sees_only_their_role(app: App) -> None:
    assert app.demo.organization_token is not None
    admin = app.signed_in(app.demo.organization_token)  # a personal access token: the owner
    csrf = csrf_of(admin.get("/settings").text)
    answer = admin.post("/settings/invitations",
                        data={"csrf": csrf, "emails": "vera@example.com", "role": "viewer"})
    assert answer.status_code == 200, answer.text
    grant = re.search(r'action="/settings/invitations/(\d+)/accept"', answer.text)
    assert grant, answer.text
    short = admin.post(f"/settings/invitations/{grant.group(1)}/accept",
                       data={"csrf": csrf, "password": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.text
    admin.post(f"/settings/invitations/{grant.group(1)}/accept",
               data={"csrf": csrf, "password": "correct horse battery"})

    viewer = TestClient(app.client.app)
    page = viewer.get("/signin")
    wrong = viewer.post("/signin", data={"csrf": csrf_of(page.text), "email": "vera@example.com",
                                         "password": "wrong password!"})
    assert wrong.status_code == 401 and 'id="err-password"' in wrong.text
    answer = viewer.post("/signin", data={"csrf": csrf_of(page.text), "next": "/syncs",
                                          "email": "Vera@example.com",
                                          "password": "correct horse battery"},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    listing = viewer.get("/syncs").text
    assert "vera@example.com · viewer" in listing and "Customers to the demo CRM" in listing
    before = _runs(app, app.demo.sync_id)
    forbidden = viewer.post(f"/syncs/{app.demo.sync_id}/trigger", data={"csrf": csrf_of(listing)})
    assert forbidden.status_code == 403 and "needs operator" in forbidden.text
    assert _runs(app, app.demo.sync_id) == before
    out = viewer.post("/signout", data={"csrf": csrf_of(listing)}, follow_redirects=False)
    assert out.headers["location"] == "/signin"
    assert viewer.get("/syncs", follow_redirects=False).status_code == 303


def _wizard_post(client: TestClient, app: App, **fields: str) -> tuple[int, str]:
    base = {"source_id": str(app.demo.source_id), "source_object": f"model:{app.demo.model_id}",
            "destination_id": str(app.demo.destination_id), "destination_object": "customers"}
    csrf = csrf_of(client.get("/syncs/new").text)
    answer = client.post("/syncs/new", data={"csrf": csrf, **base, **fields},
                         follow_redirects=False)
    return answer.status_code, answer.text if answer.status_code != 303 else \
        answer.headers["location"]


def test_wizard_constants_templates_and_a_mapping_error_beside_its_row(app: App) -> None:
    client = app.signed_in()
    status, page = _wizard_post(client, app, action="next")
    assert status == 200
    rows = {name: i for i, name in re.findall(
        r'name="kind_(\d+)" aria-label="Value of (\w+) from"', page)}
    assert set(rows) == {"id", "email", "name", "plan", "lifetime_value"}
    assert re.search(r'name="key" value="id"[^>]*checked', page)  # matched by name
    mapping = {"mapped": "1", "key": "id", "label": "Wizard sync", "operation": "upsert",
               "frequency": "daily", "hour": "6", "minute": "30"}
    for name, i in rows.items():
        mapping[f"kind_{i}"], mapping[f"value_{i}"] = "column", name
    mapping[f"kind_{rows['plan']}"], mapping[f"value_{rows['plan']}"] = "constant", "gold"
    mapping[f"kind_{rows['name']}"] = "template"
    mapping[f"value_{rows['name']}"] = "{{ record.email | upcase"  # does not parse
    status, page = _wizard_post(client, app, action="preview", **mapping)
    assert status == 400
    assert re.search(r'id="err-map:name" role="alert">[^<]*liquid_template', page), page
    mapping[f"value_{rows['name']}"] = "{{ record.email | upcase }}"
    status, page = _wizard_post(client, app, action="preview", **mapping)
    assert status == 200 and "Dry run" in page
    assert 'data-count="rows">50<' in page  # the demo's 50 customers, all valid
    assert 'data-count="creates_or_updates"><strong>50<' in page
    assert re.search(r"CUSTOMER\d+@EXAMPLE.COM", page)  # a sample record, template applied
    status, location = _wizard_post(client, app, action="save", **mapping)
    assert status == 303 and location.startswith("/syncs/")
    with app.runtime.sessions() as s:
        sync = syncs.get(s, workspace_id=app.demo.workspace_id,
                         sync_id=int(location.rsplit("/", 1)[1]))
        by_to = {m["to"]: m for m in sync.mappings}
        assert by_to["plan"]["from"] == {"type": "constant_value",
                                         "data": {"value": "gold", "basic_type": "text"}}
        assert by_to["name"]["from"]["type"] == "liquid_template"
        assert by_to["id"]["is_primary_identifier"] is True
        assert sync.mode["triggers"]["schedule"] == {"frequency": "daily", "hour": 6, "minute": 30}
    detail = client.get(location).text
    assert "Daily at 06:30 UTC" in detail and "constant" in detail and "template" in detail


def test_syncs_search_and_health_filter(app: App) -> None:
    client = app.signed_in()
    assert "Customers to the demo CRM" in client.get("/syncs?q=DEMO+crm").text
    assert "No sync matches" in client.get("/syncs?q=no-such-sync").text
    assert "No sync matches" in client.get("/syncs?show=paused").text
    with app.runtime.session() as s:
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
        syncs.update(s, sync=sync, vault=app.runtime.vault, body={"paused": True})
    try:
        paused = client.get("/syncs?show=paused").text
        assert "Customers to the demo CRM" in paused and "Paused" in paused
    finally:
        csrf = csrf_of(client.get(f"/syncs/{app.demo.sync_id}").text)
        client.post(f"/syncs/{app.demo.sync_id}/pause", data={"csrf": csrf, "paused": "0"})
    with app.runtime.sessions() as s:
        assert syncs.get(s, workspace_id=app.demo.workspace_id,
                         sync_id=app.demo.sync_id).paused is False  # resumed by the form


def test_a_personal_access_token_session_ends_with_its_token(app: App) -> None:
    with app.runtime.session() as s:
        org_id = s.get(ApiToken, 1).organization_id  # type: ignore[union-attr]
        user, token = organization.create_user(s, organization_id=org_id,
                                               email="ops@example.com", role="admin")
    client = app.signed_in(token)
    assert "ops@example.com · owner" in client.get("/syncs").text  # admins own workspaces
    with app.runtime.session() as s:
        s.execute(ApiToken.__table__.delete().where(ApiToken.user_id == user.id))
    assert client.get("/syncs", follow_redirects=False).status_code == 303


def test_sync_page_lists_its_alert_configuration(app: App) -> None:
    with app.runtime.session() as s:
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
        syncs.update(s, sync=sync, vault=app.runtime.vault,
                     body={"alert_attributes": [{"type": "FailureAlertConfiguration"}]})
    try:
        page = app.signed_in().get(f"/syncs/{app.demo.sync_id}").text
        assert "<h2>Alerts</h2>" in page and "FailureAlertConfiguration" in page
    finally:
        with app.runtime.session() as s:
            sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
            syncs.update(s, sync=sync, vault=app.runtime.vault, body={"alert_attributes": []})


def test_wizard_reads_a_table_and_run_records_are_paginated(app: App) -> None:
    client = app.signed_in()
    csrf = csrf_of(client.get("/syncs/new").text)
    table = None
    for _ in range(100):  # the table list loads in the background on first use
        page = client.post("/syncs/new", data={"csrf": csrf, "action": "next",
                                                "source_id": str(app.demo.source_id)}).text
        table = re.search(r'<option value="(table:\d+)">Table · [\w.]*customers</option>', page)
        if table:
            break
        time.sleep(0.1)
    assert table, page
    status, page = _wizard_post(client, app, source_object=table.group(1), action="preview",
                                mapped="1", key="id", kind_0="column", value_0="id")
    assert status == 200 and 'data-count="rows">50<' in page, page

    with app.runtime.session() as s:
        run = SyncRun(workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id,
                      status="failed", records_failed=30)
        s.add(run)
        s.flush()
        s.add_all(SyncRunRecord(run_id=run.id, identifier=str(i), status="rejected",
                                status_message=f"reason {i}") for i in range(30))
        run_id = run.id
    first = client.get(f"/runs/{run_id}").text
    assert "reason 0<" in first and "reason 24<" in first and "reason 25<" not in first
    assert f'href="/runs/{run_id}?status=rejected&amp;page=2"' in first
    second = client.get(f"/runs/{run_id}?status=rejected&page=2").text
    assert "reason 25<" in second and "reason 29<" in second and "reason 0<" not in second
    assert len(client.get(f"/runs/{run_id}/failures.json").json()) == 30


def test_a_failed_connection_test_lists_its_steps_and_never_echoes_the_secret(app: App) -> None:
    client = app.signed_in()
    csrf = csrf_of(client.get("/sources/new?type=postgres").text)
    answer = client.post("/sources/new", data={
        "csrf": csrf, "type": "postgres", "name": "Nope",
        "credentials.hostname": "127.0.0.1", "credentials.port": "5432",
        "credentials.user": "postgres", "credentials.password": "s3cret-never-echoed",
        "credentials.database": "reflow_console_no_such_db"})
    assert answer.status_code == 400
    assert "The connection test failed" in answer.text and "badge bad" in answer.text
    assert "reflow_console_no_such_db" in answer.text  # the database's own message
    assert "s3cret-never-echoed" not in answer.text
    assert re.search(r'type="password" name="credentials.password"[^>]*>', answer.text)
    assert 'value="127.0.0.1"' in answer.text  # non-secret input kept for the retry


def test_failures_are_pages_never_tracebacks(app: App, monkeypatch: object) -> None:
    client = app.signed_in()
    answer = client.get("/syncs/not-a-number")
    assert answer.status_code == 404 and "text/html" in answer.headers["content-type"]

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(syncs, "list_", broken)  # type: ignore[attr-defined]
    answer = client.get("/syncs")
    assert answer.status_code == 500 and "text/html" in answer.headers["content-type"]
    assert "Something went wrong" in answer.text
    assert "secret internals" not in answer.text and "Traceback" not in answer.text


def test_an_organization_user_switches_between_their_workspaces(app: App) -> None:
    from reflow.services import workspace_admin

    with app.runtime.session() as s:
        other = organization.create_organization(s, name="Two spaces", vault=app.runtime.vault,
                                                 owner_email="two@example.com")
        owner = organization.get_user(s, organization_id=other.organization_id,
                                      user_id=other.owner_id)
        second, _ = workspace_admin.create_workspace(
            s, organization_id=other.organization_id, creator=owner, name="Second <b>space</b>",
            notification_emails=[], vault=app.runtime.vault)
        second_id = second.id
    client = app.signed_in(other.owner_token)
    page = client.get("/syncs").text
    assert f'<option value="{second_id}">Second &lt;b&gt;space&lt;/b&gt;</option>' in page
    answer = client.post("/workspace", data={"csrf": csrf_of(page), "workspace_id": str(second_id)},
                         follow_redirects=False)
    assert answer.status_code == 303
    page = client.get("/syncs").text
    assert f'<option value="{second_id}" selected>' in page
    refused = client.post("/workspace", data={"csrf": csrf_of(page),
                                              "workspace_id": str(app.demo.workspace_id)})
    assert refused.status_code == 404  # another organization's workspace


def test_a_polled_fragment_sends_an_expired_page_to_sign_in(app: App) -> None:
    client = TestClient(app.client.app)
    answer = client.get("/runs/1/live", headers={
        "HX-Request": "true", "HX-Current-URL": "http://testserver/runs/1?status=invalid"},
        follow_redirects=False)
    assert answer.status_code == 200 and answer.text == ""
    assert answer.headers["HX-Redirect"] == "/signin?next=%2Fruns%2F1%3Fstatus%3Dinvalid"


def test_an_invitee_opens_the_link_chooses_a_password_and_is_signed_in(app: App) -> None:
    assert app.demo.organization_token is not None
    admin = app.signed_in(app.demo.organization_token)
    csrf = csrf_of(admin.get("/settings").text)
    page = admin.post("/settings/invitations",
                      data={"csrf": csrf, "emails": "lin@example.com", "role": "editor"}).text
    links = re.findall(r'value="(http://testserver/invitations/accept\?code=[^"]+)"', page)
    assert links, page
    link = links[-1].replace("http://testserver", "")

    invitee = TestClient(app.client.app)
    form = invitee.get(link)
    assert form.status_code == 200 and "lin@example.com" in form.text
    code = re.search(r'name="code" value="([^"]+)"', form.text)
    assert code
    data = {"csrf": csrf_of(form.text), "code": code.group(1)}
    differ = invitee.post("/invitations/accept",
                          data={**data, "password": "a long password", "confirm": "another one"})
    assert differ.status_code == 400 and 'id="err-confirm"' in differ.text
    done = invitee.post("/invitations/accept",
                        data={**data, "password": "a long password", "confirm": "a long password"})
    assert done.status_code == 200 and "secret-token:" in done.text
    assert "lin@example.com · editor" in invitee.get("/syncs").text  # signed in
    again = TestClient(app.client.app).get(link)
    assert again.status_code == 410 and "already accepted" in again.text
    forged = TestClient(app.client.app).get("/invitations/accept?code=forged")
    assert forged.status_code == 410


def test_full_resync_and_cancel_forms(app: App) -> None:
    client = app.signed_in()
    with app.runtime.session() as s:  # a queued run nobody picks up: cancel ends it at once
        sync = syncs.get(s, workspace_id=app.demo.workspace_id, sync_id=app.demo.sync_id)
        queued = runs.trigger(s, sync=sync).id
    csrf = csrf_of(client.get(f"/syncs/{app.demo.sync_id}").text)
    assert f'action="/runs/{queued}/cancel"' in client.get(f"/syncs/{app.demo.sync_id}").text
    answer = client.post(f"/runs/{queued}/cancel", data={"csrf": csrf}, follow_redirects=False)
    assert answer.headers["location"] == f"/runs/{queued}"
    with app.runtime.sessions() as s:
        run = s.get(SyncRun, queued)
        assert run is not None and run.canceled and run.status == "failed"
    answer = client.post(f"/syncs/{app.demo.sync_id}/trigger", data={"csrf": csrf, "full": "1"},
                         follow_redirects=False)
    run_id = int(answer.headers["location"].rsplit("/", 1)[1])
    with app.runtime.sessions() as s:
        run = s.get(SyncRun, run_id)
        assert run is not None and run.force_full_sync
        assert run.sync_trigger_reason == {"ui_tag": "Console",
                                           "ui_detail": "Triggered by API key of Default workspace"}
