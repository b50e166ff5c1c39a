"""The API beside uvicorn's hello-world, at fixed request rates (issue 15).

    .venv/bin/python -m bench.api_bench [--seconds 15] [--quick] [--skip-postgres]
        [--only inprocess|sqlite|workers|interference|postgres ...]

``reflow serve`` on the embedded default (SQLite state, local executor, scheduler):
the demo workspace plus 29 more syncs (30), one completed run; then, open loop
(``bench.loadgen``, its own process), GET /syncs, GET /sync_runs/{id} and
GET /syncs/{id} round-robin at 50 and 200 requests/s for ``--seconds`` each, with one
process and with ``--workers 2``. The same rates against ``bench.hello`` on the same
uvicorn (one process). Then PostgreSQL state with
``--workers 2`` at 500 requests/s, beside hello-world at 500. Prints p50, p99 and
errors per line, and Reflow's p99 over hello-world's. Before those, the CPU each of
the three requests costs in process (``bench.api_inprocess``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import api_inprocess, common

PY = sys.executable
REFLOW = [PY, "-m", "reflow.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server never healthy:\n{log.read_text()[-4000:]}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


PIDS: dict[str, int] = {}


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    PIDS[url] = proc.pid
    try:
        wait_healthy(url, proc, log)  # hello-world answers /healthz too
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def seed(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([*REFLOW, "demo", "--customers", "2000", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def more_syncs(url: str, demo: dict[str, Any], total: int) -> tuple[int, int]:
    """Copies of the demo sync up to ``total`` syncs, and one completed run."""
    headers = {"Authorization": f"Bearer {demo['workspace_token']}"}
    with httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=60) as api:
        body = api_inprocess.copy_of(demo, api.get(f"/syncs/{demo['sync_id']}").json()["data"])
        for _ in range(total - 1):
            created = api.post("/syncs", json=body)
            assert created.status_code == 200, created.text
        run_id = api.post(f"/syncs/{demo['sync_id']}/trigger").json()["data"]["sync_run_id"]
        for _ in range(600):
            if api.get(f"/sync_runs/{run_id}").json()["data"]["status"] in ("completed", "failed"):
                break
            time.sleep(0.2)
        assert api.get("/syncs", params={"per_page": 100}).json()["pagination"][
            "total_records"] == total
    return demo["sync_id"], run_id


def load(url: str, paths: list[str], rate: float, seconds: float,
         token: str | None = None) -> dict[str, Any]:
    """The load generator's result, plus the server's CPU per request: the one figure a
    shared machine does not move much."""
    cmd = [PY, "-m", "bench.loadgen", "--url", url, "--rate", str(rate),
           "--seconds", str(seconds), *[a for p in paths for a in ("--path", p)]]
    if token:
        cmd += ["--token", token]
    before = cpu_seconds(PIDS[url])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    result["cpu_ms"] = (cpu_seconds(PIDS[url]) - before) * 1000 / result["sent"]
    return result


def line(label: str, r: dict[str, Any], anchor: dict[str, Any] | None = None) -> None:
    ratio = f"  p99 x{r['p99_ms'] / anchor['p99_ms']:.1f} of hello-world" if anchor else ""
    kinds = f" {r['error_kinds']}" if r["errors"] else ""
    print(f"  {label:<44} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
          f"errors {r['errors']}/{r['sent']}{kinds}  server CPU {r['cpu_ms']:.2f} ms/request"
          f"{ratio}", flush=True)
    for path, p in sorted(r.get("paths", {}).items()) if anchor else ():
        print(f"      {path:<40} p50 {p['p50_ms']:7.1f} ms  p99 {p['p99_ms']:7.1f} ms")


def timed_run(api: httpx.Client, sync_id: int) -> float:
    """A full sync of ``sync_id`` through the API: seconds from trigger to completion."""
    start = time.perf_counter()
    run_id = api.post(f"/syncs/{sync_id}/trigger", params={"force_full_sync": "true"}).json()[
        "data"]["sync_run_id"]
    while (status := api.get(f"/sync_runs/{run_id}").json()["data"]["status"]) not in (
            "completed", "failed"):
        time.sleep(0.1)
    assert status == "completed", status
    return time.perf_counter() - start


def interference(base: dict[str, str], tmp: Path, rate: float, seconds: float) -> None:
    """A sync run and API traffic in one ``reflow serve`` (the runs' threads and the
    request handling share the process): the run alone, the API alone, then both."""
    home = tmp / "interference"
    home.mkdir()
    env = {**base, "REFLOW_HOME": str(home)}
    out = subprocess.run([*REFLOW, "demo", "--customers", "200000", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    demo = json.loads(out.stdout.strip().splitlines()[-1])
    headers = {"Authorization": f"Bearer {demo['workspace_token']}"}
    paths = ["/api/v1/syncs", f"/api/v1/syncs/{demo['sync_id']}"]
    with process([*REFLOW, "serve"], env, home / "serve.log") as url, \
            httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=60) as api:
        alone = min(timed_run(api, demo["sync_id"]) for _ in range(2))  # the first creates
        quiet = load(url, paths, rate, seconds, demo["workspace_token"])
        loaded: dict[str, Any] = {}
        with ThreadPoolExecutor(1) as pool:
            traffic = pool.submit(load, url, paths, rate, seconds, demo["workspace_token"])
            time.sleep(0.5)
            busy = timed_run(api, demo["sync_id"])
            loaded = traffic.result()
    print(f"  demo sync (200,000 rows, SQLite -> SQLite) alone {alone:6.2f} s, under "
          f"{rate:.0f} req/s of API traffic {busy:6.2f} s: x{busy / alone:.2f}", flush=True)
    line(f"API {rate:.0f} req/s, no run", quiet)
    line(f"API {rate:.0f} req/s, during a run", loaded)


def reflow_lines(env: dict[str, str], home: Path, rates: list[float], seconds: float,
                 hello: dict[float, dict[str, Any]], workers: int, label: str) -> None:
    demo = seed(env)
    cmd = [*REFLOW, "serve", *(["--workers", str(workers)] if workers > 1 else [])]
    with process(cmd, env, home / "serve.log") as url:
        sync_id, run_id = more_syncs(url, demo, 30)
        paths = ["/api/v1/syncs", f"/api/v1/sync_runs/{run_id}", f"/api/v1/syncs/{sync_id}"]
        for rate in rates:
            r = load(url, paths, rate, seconds, demo["workspace_token"])
            line(f"reflow {label}, {rate:.0f} req/s", r, hello[rate])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--quick", action="store_true", help="5 s per rate")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--only", choices=LINES, action="append",
                        help="only these lines (repeatable), each beside hello-world at its "
                             "rates: inprocess, sqlite (one process), workers (SQLite, "
                             "--workers 2), interference, postgres")
    args = parser.parse_args()
    run(seconds=5 if args.quick else args.seconds, postgres=not args.skip_postgres,
        only=set(args.only or LINES))


LINES = ("inprocess", "sqlite", "workers", "interference", "postgres")


def run(*, seconds: float, postgres: bool = True, only: set[str] | None = None) -> None:
    only = set(LINES) if only is None else only
    if not postgres:
        only.discard("postgres")
    # First the CPU per request in process (no sockets, no other process in the way):
    # the figure a shared machine moves least; then the open loop, which it moves most.
    if "inprocess" in only:
        api_inprocess.run(postgres=False)
        if postgres:
            api_inprocess.run(postgres=True)
    print(f"\nAPI, open loop, {seconds:.0f} s per rate: GET /syncs (30 syncs), "
          "GET /sync_runs/{id}, GET /syncs/{id} round-robin")
    tmp = Path(tempfile.mkdtemp(prefix="reflow-bench-api-"))
    base = {**os.environ, "REFLOW_LOG_LEVEL": "WARNING", "REFLOW_SECRET_KEY": "bench"}
    base.pop("REFLOW_DATABASE_URL", None)
    rates = ([50.0, 200.0] if only & {"sqlite", "workers", "interference"} else []) + (
        [500.0] if "postgres" in only else [])
    hello: dict[float, dict[str, Any]] = {}
    hello_cmd = [PY, "-m", "uvicorn", "bench.hello:app", "--log-level", "warning"]
    with process(hello_cmd, base, tmp / "hello.log") as url:
        for rate in rates:
            hello[rate] = load(url, ["/"], rate, seconds)
            line(f"uvicorn hello-world, {rate:.0f} req/s", hello[rate])
    for workers in [w for w, name in ((1, "sqlite"), (2, "workers")) if name in only]:
        home = tmp / f"sqlite-{workers}"
        home.mkdir()
        label = "embedded (SQLite)" + (f", --workers {workers}" if workers > 1 else "")
        reflow_lines({**base, "REFLOW_HOME": str(home)}, home, [50.0, 200.0], seconds, hello,
                     workers, label)
    if "interference" in only:
        print("\nsync runs and API traffic in one embedded process")
        interference(base, tmp, 50.0, seconds)
    if "postgres" in only:
        db = common.create_database()
        home = tmp / "pg"
        home.mkdir()
        env = {**base, "REFLOW_HOME": str(home), "REFLOW_DATABASE_URL": common.dsn(db)}
        try:
            reflow_lines(env, home, [500.0], seconds, hello, 2, "PostgreSQL, --workers 2")
        finally:
            common.drop_database(db)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
