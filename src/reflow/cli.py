"""``reflow`` command: serve, worker, scheduler, init, migrate, demo, token; and, as clients of
a server, export, plan, apply, schema, run, runs, rejected."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from reflow.config import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from reflow.runtime import Runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create the schema, an organization and tokens")
    init.add_argument("--json", action="store_true", help="print the result as one JSON line")

    serve = commands.add_parser("serve", help="run the API and the local executor")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=1,
        help="API processes; the scheduler and the local executor run once, in the parent",
    )
    serve.add_argument(
        "--init", action="store_true", help="initialize the state store first if it is empty"
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="with --init on an empty store: seed the demo workspace instead of an empty one",
    )

    commands.add_parser("migrate", help="upgrade the state store's schema")

    worker = commands.add_parser("worker", help="run sync runs from the broker (Celery)")
    worker.add_argument("--concurrency", type=int, default=None,
                        help="runs at a time (default: REFLOW_LOCAL_WORKERS)")
    commands.add_parser("scheduler", help="run the scheduler, reaper and requeue loop")

    demo = commands.add_parser(
        "demo", help="seed a demo workspace: SQLite warehouse -> model -> upsert sync -> SQLite CRM"
    )
    demo.add_argument("--customers", type=int, default=5000, help="sample rows to generate")
    demo.add_argument("--base-url", default="http://127.0.0.1:8000", help="for the printed curls")
    demo.add_argument("--json", action="store_true", help="print the result as one JSON line")

    from reflow.project.arguments import CLIENT_COMMANDS, add_client_commands

    add_client_commands(commands)  # issue 16: export/plan/apply/schema, run/runs/rejected
    _add_token_command(commands)

    args = parser.parse_args(argv)
    if args.command in CLIENT_COMMANDS:  # HTTP clients of a server: no local state store
        from reflow.project.commands import run_command

        return run_command(args)
    settings = get_settings()
    from reflow.jobs.logcontext import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    commands_by_name = {"init": _init, "serve": _serve, "migrate": _migrate,
                        "worker": _worker, "scheduler": _scheduler}
    commands_by_name["demo"] = _demo
    commands_by_name["token"] = _token
    return commands_by_name[args.command](args, settings)


def _init(args: argparse.Namespace, settings: Settings) -> int:
    from reflow.errors import Conflict
    from reflow.runtime import Runtime
    from reflow.services.bootstrap import initialize

    runtime = Runtime.from_settings(settings)
    try:
        result = initialize(runtime.engine)
    except Conflict as exc:
        print(f"reflow init: {exc}", file=sys.stderr)
        return 1
    _print_init(result, as_json=args.json)
    return 0


def _print_init(result: object, *, as_json: bool) -> None:
    data = {
        "organization_id": result.organization_id,  # type: ignore[attr-defined]
        "organization_token": result.organization_token,  # type: ignore[attr-defined]
        "workspace_id": result.workspace_id,  # type: ignore[attr-defined]
        "workspace_token": result.workspace_token,  # type: ignore[attr-defined]
    }
    if as_json:
        print(json.dumps(data))
        return
    print("Reflow is initialized. These tokens are shown once; keep them.")
    for key, value in data.items():
        print(f"  {key}: {value}")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from reflow.api.app import create_app
    from reflow.db import migrate
    from reflow.jobs.executor import make_executor
    from reflow.runtime import Runtime
    from reflow.services.bootstrap import initialize, is_initialized

    _dump_threads_on_sigusr1()
    runtime = Runtime.from_settings(settings)
    console = f"http://{args.host}:{args.port}/"
    if not is_initialized(runtime.engine):
        if not args.init:
            print("reflow serve: the state store is empty; run `reflow init` first",
                  file=sys.stderr)
            return 1
        if args.demo:
            from reflow.services import demo

            seeded = demo.seed(runtime)
            print(demo.instructions(seeded, f"http://{args.host}:{args.port}"), flush=True)
            console = demo.console_url(seeded, f"http://{args.host}:{args.port}")
        else:
            result = initialize(runtime.engine)
            _print_init(result, as_json=False)
            base = f"http://{args.host}:{args.port}/api/v1"
            print(f'\nTry:\n  curl -H "Authorization: Bearer {result.workspace_token}" '
                  f"{base}/sources\n", flush=True)
    elif not migrate.is_up_to_date(runtime.engine):
        migrate.upgrade(runtime.engine)
    if not _storage_ready(runtime, "serve"):
        return 1
    from reflow.runtime import install_outbound_policy

    install_outbound_policy(settings, serving_host=args.host)
    print(f"Reflow console: {console}  (API under /api/v1)", flush=True)
    from reflow.api import workers

    if args.workers > 1:
        workers.serve(runtime, workers=args.workers, host=args.host, port=args.port,
                      log_level=settings.log_level.lower())
        return 0
    runtime.executor = make_executor(runtime)
    app = create_app(runtime)
    # Sync runs' threads and request handling share this process's GIL: a thread that
    # waits for it gets it within 1 ms instead of Python's default 5, so a request (which
    # takes and drops it at every query) is not held up ~5 ms at each step by a run.
    sys.setswitchinterval(0.001)
    level = settings.log_level.lower()
    uvicorn.run(app, host=args.host, port=args.port, log_level=level,
                access_log=workers.access_log(level))
    return 0


def _dump_threads_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` writes every thread's stack to stderr (the log): how to see
    what a run that will not stop, or a shutdown that will not finish, is waiting on."""
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)


def _migrate(_: argparse.Namespace, settings: Settings) -> int:
    from reflow.db import migrate
    from reflow.runtime import Runtime

    migrate.upgrade(Runtime.from_settings(settings).engine)
    print("reflow migrate: the schema is up to date")
    return 0


def _ready_runtime(settings: Settings, command: str) -> Runtime | None:
    from reflow.db import migrate
    from reflow.runtime import Runtime
    from reflow.services.bootstrap import is_initialized

    runtime = Runtime.from_settings(settings)
    if not is_initialized(runtime.engine) or not migrate.is_up_to_date(runtime.engine):
        print(f"reflow {command}: the state store is not initialized or not migrated; run "
              "`reflow init` or `reflow migrate` first", file=sys.stderr)
        return None
    return runtime


def _storage_ready(runtime: Runtime, command: str) -> bool:
    """Refuse to start with a storage URL that cannot be written: runs would fail later,
    one by one, after reading their source."""
    from reflow.storage import StorageError

    try:
        runtime.snapshots.check_writable()
    except StorageError as exc:
        print(f"reflow {command}: {exc}", file=sys.stderr)
        return False
    return True


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from reflow.jobs.celery_app import run_worker

    if settings.executor != "celery":
        print("reflow worker: set REFLOW_EXECUTOR=celery (and REFLOW_BROKER_URL)", file=sys.stderr)
        return 1
    _dump_threads_on_sigusr1()
    runtime = _ready_runtime(settings, "worker")
    if runtime is None or not _storage_ready(runtime, "worker"):
        return 1
    run_worker(runtime, concurrency=args.concurrency or settings.local_workers)
    return 0


def _scheduler(_: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from reflow.jobs.executor import make_executor
    from reflow.jobs.scheduler import Scheduler

    runtime = _ready_runtime(settings, "scheduler")
    if runtime is None:
        return 1
    runtime.executor = make_executor(runtime)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    Scheduler(runtime).run_forever(stop)
    return 0



def _demo(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from reflow.errors import ReflowError
    from reflow.runtime import Runtime
    from reflow.services import demo

    try:
        result = demo.seed(Runtime.from_settings(settings), customers=max(1, args.customers))
    except ReflowError as exc:
        print(f"reflow demo: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
    else:
        print(demo.instructions(result, args.base_url.rstrip("/")))
    return 0

# -- reflow token ------------------------------------------------------------------------


def _add_token_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    token = commands.add_parser(
        "token", help="list, create or revoke API tokens in the state store (a lost token)"
    )
    actions = token.add_subparsers(dest="token_command", required=True)
    listing = actions.add_parser("list", help="every token's id, kind, scope and owner")
    listing.add_argument("--json", action="store_true", help="one JSON line per token")
    create = actions.add_parser("create", help="a new token, printed once")
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--workspace", type=int, metavar="ID", help="a workspace API key")
    scope.add_argument("--organization", type=int, metavar="ID",
                       help="an organization (personal access) token")
    create.add_argument("--user", metavar="EMAIL",
                        help="with --organization: whose token (default: an admin)")
    create.add_argument("--json", action="store_true", help="print the result as one JSON line")
    revoke = actions.add_parser("revoke", help="delete a token; requests with it get 401")
    revoke.add_argument("token_id", type=int, metavar="ID")


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from reflow.errors import ReflowError

    runtime = _ready_runtime(settings, "token")
    if runtime is None:
        return 1
    try:
        with runtime.session() as session:
            return _token_action(session, args)
    except ReflowError as exc:
        print(f"reflow token: {exc.message}", file=sys.stderr)
        return 1


def _token_action(session: Session, args: argparse.Namespace) -> int:
    from reflow.services import tokens

    if args.token_command == "list":
        for t in tokens.list_tokens(session):
            row = {"id": t.id, "kind": t.kind, "organization_id": t.organization_id,
                   "workspace_id": t.workspace_id, "user": t.user_email,
                   "created_at": t.created_at.isoformat()}
            print(json.dumps(row) if args.json else "  ".join(f"{k}={v}" for k, v in row.items()))
        return 0
    if args.token_command == "revoke":
        tokens.revoke(session, token_id=args.token_id)
        print(f"reflow token: token {args.token_id} revoked")
        return 0
    if args.workspace is not None:
        token_id, token = tokens.create_workspace_token(session, workspace_id=args.workspace)
        kind = "workspace"
    else:
        token_id, token = tokens.create_organization_token(
            session, organization_id=args.organization, email=args.user)
        kind = "organization"
    if args.json:
        print(json.dumps({"id": token_id, "kind": kind, "token": token}))
    else:
        print(f"{kind} token {token_id} (shown once; store it now):\n{token}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
