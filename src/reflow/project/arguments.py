"""The ``reflow`` subcommands that are clients of a server's API, as argparse parsers.
Kept apart from ``reflow.cli`` (and free of heavy imports) so the server commands stay
as they are and their start-up pays nothing for these."""

from __future__ import annotations

import argparse
import os

CLIENT_COMMANDS = ("schema", "export", "plan", "apply", "run", "runs", "rejected")


def add_client_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Client commands: they call a server's API (``--url``/``--token`` or
    ``REFLOW_URL``/``REFLOW_TOKEN``), so CI can plan and apply against a remote Reflow."""
    env = dict(os.environ)  # the client's own variables, not the server's settings

    def client(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_)
        sub.add_argument("--url", default=env.get("REFLOW_URL", "http://127.0.0.1:8000"),
                         help="the Reflow server (default: REFLOW_URL or http://127.0.0.1:8000)")
        sub.add_argument("--token", default=env.get("REFLOW_TOKEN"),
                         help="a workspace token (default: REFLOW_TOKEN)")
        return sub

    commands.add_parser("schema", help="print the JSON Schema of project files")
    export = client("export", "write the workspace as a project folder")
    export.add_argument("dir")
    for name, help_ in (("plan", "show what apply would change; exit 2 when it would change"
                         " anything"), ("apply", "make the workspace match the project")):
        sub = client(name, help_)
        sub.add_argument("dir")
        sub.add_argument("--prune", action="store_true",
                         help="delete objects the project manages but no longer defines")
        sub.add_argument("--rotate-secrets", action="store_true",
                         help="send secret credentials of existing connections again (the"
                         " API never returns them, so plan cannot see a change)")
        if name == "plan":
            sub.add_argument("--json", action="store_true", help="print the plan as JSON")
    run = client("run", "trigger a sync (id or slug)")
    run.add_argument("sync")
    run.add_argument("--wait", action="store_true", help="follow the run with a progress bar")
    run.add_argument("--full", action="store_true", help="force a full sync")
    run.add_argument("--max-rejected", type=int, default=None,
                     help="exit 3 when the run rejects more records than this")
    run.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    run.add_argument("--json", action="store_true", help="print the final run as JSON")
    runs = client("runs", "list a sync's runs (id or slug)")
    runs.add_argument("sync")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--json", action="store_true")
    rejected = client("rejected", "list the records a sync run rejected")
    rejected.add_argument("run", type=int)
    rejected.add_argument("--status", choices=("rejected", "invalid", "NULL", "DUPLICATE"))
    rejected.add_argument("--json", action="store_true")
