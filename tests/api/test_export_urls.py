"""Records-export URLs are signed and short-lived: a URL works as returned (like
Census's presigned URLs), not once its signature or expiry is altered, not for another
run, and without a signature only with the run's own workspace token. Expired exports
are deleted."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import psycopg
import pytest

from reflow.errors import Gone
from reflow.services import records
from tests.api.conftest import Server, wait_for_run
from tests.api.org_helpers import create_workspace, make_sync


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _with_query(url: str, **changes: str) -> str:
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return _strip_query(url) + "?" + urlencode({**query, **changes})


def _completed_run(api: httpx.Client, conn: psycopg.Connection, database: str) -> int:
    made = make_sync(api, conn, database)
    run_id = api.post(f"/syncs/{made.sync_id}/trigger").json()["data"]["sync_run_id"]
    assert wait_for_run(api, run_id)["status"] == "completed"
    return int(run_id)


def test_export_urls_are_signed_scoped_and_expire(
    server: Server, api: httpx.Client, pg_conn: psycopg.Connection, pg_database: str
) -> None:
    run_id = _completed_run(api, pg_conn, pg_database)
    other_run = _completed_run(api, pg_conn, pg_database)
    urls = api.get(f"/sync_runs/{run_id}/records_export").json()["urls"]
    assert urls
    url = urls[0]
    query = parse_qs(urlsplit(url).query)
    expires = int(query["expires"][0])
    assert time.time() < expires <= time.time() + 900 + 5  # REFLOW_EXPORT_TTL_SECONDS

    assert httpx.get(url, timeout=30).status_code == 200  # the URL alone is the credential
    assert httpx.get(_strip_query(url), timeout=30).status_code == 404
    assert httpx.get(_with_query(url, expires=str(expires + 3600)), timeout=30).status_code == 404
    assert httpx.get(_with_query(url, signature="0" * 64), timeout=30).status_code == 404
    past = _with_query(url, expires=str(int(time.time()) - 1))
    assert httpx.get(past, timeout=30).status_code == 404
    # The same token and signature on another run's path: nothing served.
    elsewhere = url.replace(f"/sync_runs/{run_id}/", f"/sync_runs/{other_run}/")
    assert httpx.get(elsewhere, timeout=30).status_code == 404

    # Without a signature: the run's workspace token works, another workspace's does not.
    assert api.get(_strip_query(url).split("/api/v1", 1)[1]).status_code == 200
    with server.client(server.organization_token) as org:
        _, other_key = create_workspace(org)
    with server.client(other_key) as stranger:
        assert stranger.get(_strip_query(url).split("/api/v1", 1)[1]).status_code == 404

    # Export files are owner-only.
    token = urlsplit(url).path.split("/")[-2]
    directory = Path(server.env["REFLOW_HOME"]) / "runs" / str(run_id) / "export" / token
    for path in directory.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def _fake_export(home: Path, run_id: int, token: str, expires: int) -> Path:
    directory = home / "runs" / str(run_id) / "export" / token
    directory.mkdir(parents=True)
    (directory / "expires").write_text(str(expires))
    (directory / "records.parquet").write_bytes(b"PAR1")
    return directory


def test_expired_exports_are_deleted_on_access_and_pruned(tmp_path: Path) -> None:
    fresh = _fake_export(tmp_path, 1, "a" * 32, expires=2_000)
    stale = _fake_export(tmp_path, 2, "b" * 32, expires=1_000)
    legacy = tmp_path / "runs" / "3" / "export" / ("c" * 32)  # from before expiries
    legacy.mkdir(parents=True)

    assert records.export_file(tmp_path, run_id=1, token="a" * 32, name="records.parquet",
                               now=1_500).is_file()
    with pytest.raises(Gone):
        records.export_file(tmp_path, run_id=1, token="a" * 32, name="records.parquet",
                            now=2_001)
    assert not fresh.exists()
    assert records.prune_exports(tmp_path, now=1_500) == 2
    assert not stale.exists() and not legacy.exists()
