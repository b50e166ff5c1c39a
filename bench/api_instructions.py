"""Instructions a request in process, counted by callgrind: a figure that no other
process on a shared machine moves (CPU time does, a little; open-loop latency, a lot).

    .venv/bin/python -m bench.api_instructions [--postgres] [--requests 100]

Seeds the state as ``bench.api_inprocess`` does (the demo workspace, 29 more syncs,
one completed run), then for each of the three GETs starts a child process under
``valgrind --tool=callgrind --instr-atstart=no``: the child builds the app on that
state (``create_app``), runs its lifespan and 30 requests of each path at full speed,
uninstrumented; then this process turns instrumentation on (``callgrind_control``)
and the child sends ``--requests`` requests of its path inside ``functools.reduce``,
the one function callgrind collects in (``--toggle-collect``). Prints instructions per
request. Needs valgrind; the three children run at once (~1 min on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import api_inprocess


def child(path: str, requests: int, go: Path) -> None:
    """In the child (under valgrind): the app warm, then ``requests`` GETs of ``path``."""
    from reflow.api.app import create_app
    from reflow.config import Settings
    from reflow.runtime import Runtime

    settings = Settings(home=Path(os.environ["REFLOW_HOME"]), secret_key="bench",
                        log_level="WARNING", database_url=os.environ.get("BENCH_DATABASE_URL"))
    runtime = Runtime.from_settings(settings)
    app, token = create_app(runtime), os.environ["BENCH_TOKEN"]
    paths = os.environ["BENCH_PATHS"].split(",")
    loop = asyncio.new_event_loop()
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    for warm in paths:
        for _ in range(30):
            loop.run_until_complete(api_inprocess.call(app, warm, token))
    print("READY", flush=True)
    while not go.exists():
        time.sleep(0.05)

    def one(_: None, __: int) -> None:
        status, body = loop.run_until_complete(api_inprocess.call(app, path, token))
        assert status == 200, body[:500]

    functools.reduce(one, range(requests), None)  # collected: see --toggle-collect
    loop.run_until_complete(lifespan.__aexit__(None, None, None))
    runtime.dispose()


def count(path: str, requests: int, env: dict[str, str], tmp: Path) -> subprocess.Popen[bytes]:
    name = path.strip("/").replace("/", "_")
    go, out, log = tmp / f"{name}.go", tmp / f"{name}.callgrind", tmp / f"{name}.log"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         "--toggle-collect=*functools_reduce*", f"--callgrind-out-file={out}",
         sys.executable, "-m", "bench.api_instructions", "--child", path,
         "--requests", str(requests), "--go", str(go)],
        env={**env, "PYTHONHASHSEED": "0"}, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    while b"READY" not in log.read_bytes():
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.5)
    subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                   capture_output=True)
    go.touch()
    return proc


def instructions(out: Path) -> int:
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def run(*, requests: int = 100, postgres: bool = False) -> None:
    store = "PostgreSQL" if postgres else "SQLite"
    print(f"\nAPI in process ({store} state): instructions per request (callgrind, "
          f"{requests} requests each)")
    with api_inprocess.state_store(postgres, "reflow-bench-instr-") as (tmp, url):
        home = tmp / "home"
        home.mkdir()
        runtime, demo, paths = api_inprocess.seed(home, url)
        runtime.dispose()
        env = {**os.environ, "REFLOW_HOME": str(home), "BENCH_TOKEN":
               demo["workspace_token"], "BENCH_PATHS": ",".join(paths),
               "BENCH_DATABASE_URL": url or ""}
        if not url:
            env.pop("BENCH_DATABASE_URL")
        procs = [(path, count(path, requests, env, tmp)) for path in paths]
        for path, proc in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"{path}: the child failed")
            name = path.strip("/").replace("/", "_")
            per = instructions(tmp / f"{name}.callgrind") / requests
            print(f"  {'reflow GET ' + path:<44} {per / 1e6:6.3f} M instructions/request",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL state")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, Path(args.go))
    else:
        run(requests=args.requests, postgres=args.postgres)


if __name__ == "__main__":
    main()
