"""A reference implementation of the Census Custom Destination API (JSON-RPC 2.0) as a
real HTTP server on loopback, keeping records in memory.

Objects: ``contact`` (identifier ``id``, integer; fields ``name``, ``amount``,
``active``, ``email``) and ``event`` (identifier ``event_id``; accepts new fields on
write). It rejects one kind of record: a contact whose ``name`` starts with ``reject``.
It wants ``Authorization: Bearer <api_key>``: without it ``test_connection`` reports
``success: false`` with its own message and other methods answer a JSON-RPC error.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIELDS = {
    "contact": [
        {
            "field_api_name": "id",
            "label": "ID",
            "identifier": True,
            "required": True,
            "createable": True,
            "updateable": False,
            "type": "integer",
            "array": False,
        },
        {
            "field_api_name": "name",
            "label": "Name",
            "identifier": False,
            "required": False,
            "createable": True,
            "updateable": True,
            "type": "string",
            "array": False,
        },
        {
            "field_api_name": "amount",
            "label": "Amount",
            "identifier": False,
            "required": False,
            "createable": True,
            "updateable": True,
            "type": "float",
            "array": False,
        },
        {
            "field_api_name": "active",
            "label": "Active",
            "identifier": False,
            "required": False,
            "createable": True,
            "updateable": True,
            "type": "boolean",
            "array": False,
        },
        {
            "field_api_name": "email",
            "label": "Email",
            "identifier": True,
            "required": False,
            "createable": True,
            "updateable": True,
            "type": "string",
            "array": False,
        },
    ],
    "event": [
        {
            "field_api_name": "event_id",
            "label": "Event ID",
            "identifier": True,
            "required": True,
            "createable": True,
            "updateable": False,
            "type": "string",
            "array": False,
        },
    ],
}
OBJECTS = [
    {"object_api_name": "contact", "label": "Contacts"},
    {"object_api_name": "event", "label": "Events", "can_create_fields": "on_write"},
]
OPERATIONS = {"contact": ["upsert", "insert", "update", "mirror"], "event": ["insert"]}


@dataclass
class State:
    api_key: str
    records: dict[str, dict[Any, dict[str, Any]]] = field(
        default_factory=lambda: {"contact": {}, "event": {}}
    )
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def batches(self) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c["method"] == "sync_batch"]


class CustomDestinationServer:
    def __init__(self, api_key: str = "secret-key") -> None:
        self.state = State(api_key)
        state = self.state

        class Handler(_Handler):
            pass

        Handler.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/census"

    def __enter__(self) -> CustomDestinationServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        authorized = self.headers.get("Authorization") == f"Bearer {self.state.api_key}"
        with self.state.lock:
            self.state.calls.append(
                {"method": body["method"], "params": body["params"], "headers": dict(self.headers)}
            )
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": body["id"]}
        try:
            reply["result"] = self._dispatch(body["method"], body["params"], authorized)
        except RpcFailure as exc:
            reply["error"] = {"code": exc.code, "message": str(exc)}
        raw = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _dispatch(self, method: str, params: dict[str, Any], authorized: bool) -> dict[str, Any]:
        if method == "test_connection":
            if not authorized:
                return {"success": False, "error_message": "Acme rejected the API key (HTTP 401)"}
            return {"success": True}
        if not authorized:
            raise RpcFailure(-32001, "unauthorized: bad API key")
        if method == "list_objects":
            return {"objects": OBJECTS}
        if method == "list_fields":
            return {"fields": FIELDS[params["object"]["object_api_name"]]}
        if method == "supported_operations":
            return {"operations": OPERATIONS[params["object"]["object_api_name"]]}
        if method == "get_sync_speed":
            return {
                "maximum_batch_size": 2,
                "maximum_parallel_batches": 3,
                "maximum_records_per_second": 100000,
            }
        if method == "sync_batch":
            return {"record_results": self._sync_batch(params["sync_plan"], params["records"])}
        raise RpcFailure(-32601, f"method not found: {method}")

    def _sync_batch(self, plan: dict[str, Any], records: list[dict[str, Any]]) -> list[Any]:
        name = plan["object"]["object_api_name"]
        key = next(k for k, v in plan["schema"].items() if v["active_identifier"])
        store = self.state.records[name]
        results = []
        with self.state.lock:
            for record in records:
                ident = record[key]
                error = self._apply(store, plan["operation"], ident, record)
                results.append(
                    {"identifier": ident, "success": error is None, "error_message": error}
                )
        return results

    @staticmethod
    def _apply(
        store: dict[Any, Any], operation: str, ident: Any, record: dict[str, Any]
    ) -> str | None:
        if str(record.get("name") or "").startswith("reject"):
            return f"name {record['name']!r} is not allowed"
        if operation == "delete":
            store.pop(ident, None)
        elif operation == "insert":
            store.setdefault(ident, dict(record))
        elif operation == "update":
            # Skipping a missing record is what update means; it is not an error here.
            if ident in store:
                store[ident].update(record)
        elif operation == "upsert":
            store.setdefault(ident, {}).update(record)
        else:
            return f"unsupported operation {operation}"
        return None


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
