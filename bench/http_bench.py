"""The HTTP destination beside a hand-written httpx script (issue 15).

    .venv/bin/python -m bench.http_bench [--rows 200000] [--repeat 2]

PostgreSQL model -> a no-op HTTP server on loopback (``bench.http_sink``, its own
process), JSON arrays of 100 records a request, 8 requests in flight. Reflow runs a
real first sync through the engine (``bench.reflow_child --http-url``: in-warehouse
diff, HTTP Request destination, snapshot commit, succeeded-records log); the anchor is
``bench.http_script``. Each runs ``--repeat`` times, alternating; the fastest of each is
compared (noise on a shared machine only ever slows a run down). The sink counts the
requests it received, so a run that lost batches cannot look fast.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench import common

PY = sys.executable
PER_REQUEST, IN_FLIGHT = 100, 8


@contextmanager
def sink(tmp: Path) -> Iterator[str]:
    port_file = tmp / "sink.port"
    proc = subprocess.Popen([PY, "-m", "bench.http_sink", "--port-file", str(port_file)])
    try:
        for _ in range(200):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        proc.terminate()
        proc.wait()


def received(url: str, *, reset: bool = False) -> int:
    stats = httpx.get(f"{url}/stats").json()
    if reset:
        httpx.post(f"{url}/reset")
    return int(stats["requests"])


def _json_line(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[2]} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def script_run(db: str, url: str) -> float:
    out = _json_line([PY, "-m", "bench.http_script", "--database", db, "--table", "model",
                      "--url", f"{url}/records", "--per-request", str(PER_REQUEST),
                      "--in-flight", str(IN_FLIGHT)])
    return float(out["seconds"])


def reflow_run(db: str, url: str, home: Path, profile: str | None) -> dict[str, Any]:
    cmd = [PY, "-m", "bench.reflow_child", "--home", str(home), "--database", db,
           "--model", "model", "--dest", "-", "--engine", "advanced", "--http-url",
           f"{url}/records", "--per-request", str(PER_REQUEST), "--in-flight", str(IN_FLIGHT)]
    if profile:
        cmd += ["--profile", profile]
    result = _json_line(cmd)
    if result["status"] != "completed":
        raise RuntimeError(f"reflow run {result['status']}: {result['error']}")
    return result


def run(db: str, tmp: Path, rows: int, repeat: int, profile: Path | None = None) -> None:
    print(f"\nHTTP Request destination: {rows:,} rows, PostgreSQL -> no-op HTTP server on "
          f"loopback, {PER_REQUEST} records a request, {IN_FLIGHT} in flight (fastest of {repeat})")
    with common.connect(db) as conn:
        conn.execute("DROP TABLE IF EXISTS model")
        common.generate(conn, "model", rows)
    expected = -(-rows // PER_REQUEST)
    scripts, reflows = [], []
    with sink(tmp) as url:
        for i in range(repeat):
            scripts.append(script_run(db, url))
            assert received(url, reset=True) == expected, "the script lost requests"
            prof = str(profile / f"http_{i}.prof") if profile else None
            reflows.append(reflow_run(db, url, tmp / f"http_{i}", prof))
            got = received(url, reset=True)
            assert got == expected, f"reflow sent {got} requests, expected {expected}"
            assert reflows[-1]["written"] == rows, reflows[-1]
    script = min(scripts)
    best = min(r["seconds"] for r in reflows)
    _line("httpx script (threads, orjson, keep-alive)", script, f"{rows / script:9,.0f} records/s",
          scripts)
    _line("reflow sync, HTTP Request destination", best,
          f"{rows / best:9,.0f} records/s  x{best / script:.2f} of the script",
          [r["seconds"] for r in reflows])


def _line(label: str, seconds: float, extra: str, runs: list[float]) -> None:
    all_runs = "(runs: " + ", ".join(f"{s:.2f}" for s in runs) + ")" if len(runs) > 1 else ""
    print(f"  {label:<44} {seconds:8.2f} s  {extra}  {all_runs}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", help="write cProfile files of the Reflow runs here")
    args = parser.parse_args()
    db = common.create_database()
    tmp = Path(tempfile.mkdtemp(prefix="reflow-bench-http-"))
    prof = Path(args.profile) if args.profile else None
    if prof:
        prof.mkdir(parents=True, exist_ok=True)
    try:
        run(db, tmp, args.rows, args.repeat, prof)
    finally:
        common.drop_database(db)


if __name__ == "__main__":
    main()
