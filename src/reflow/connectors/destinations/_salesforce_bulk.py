"""Bulk API 2.0 ingest jobs for large Salesforce batches.

One job per batch: create it (object, operation, ``externalIdFieldName`` for upsert),
upload the records as CSV, close it (``UploadComplete``), poll until ``JobComplete``,
then read ``successfulResults`` and ``failedResults`` and map each row back to its record
by the identifying column (Salesforce does not keep the upload order in its results).

In the CSV a reference filled by lookup is the column ``<relationship>.<external id
field>``; ``#N/A`` sets a field to null and an empty value leaves it as it is, which is
how ``sync_null_values: false`` and ``preserve_values`` travel here.
"""

from __future__ import annotations

import csv
import io
import time
from typing import TYPE_CHECKING, Any

from reflow.connectors.base import Action, RejectedRecord, WriteResult
from reflow.connectors.errors import BatchRejected, TransientError

if TYPE_CHECKING:
    from reflow.connectors.destinations.salesforce import SalesforceWriter

_OPERATION = {"upsert": "upsert", "insert": "insert", "update": "update", "delete": "delete"}
_DONE = ("JobComplete", "Failed", "Aborted")
#: Longest a job is waited for before the batch is retried by the engine.
MAX_WAIT_SECONDS = 1800.0


def bulk_write(writer: SalesforceWriter, records: list[dict[str, Any]],
               action: Action) -> WriteResult:
    prepared, rejected = writer.prepare(records, action)
    if not prepared:
        return WriteResult(rejected)
    operation = _OPERATION[action]
    if action == "upsert" and writer.by_id:
        operation = "update"
    ident = "Id" if operation in ("update", "delete") else writer.ctx.key_field
    columns, text = _csv(writer, prepared)
    job = _create(writer, operation)
    _upload(writer, job, text)
    state = _wait(writer, job)
    if state["state"] != "JobComplete":
        raise BatchRejected(f"Salesforce Bulk API job {job} ended {state['state']}:"
                            f" {state.get('errorMessage') or 'no reason given'}")
    by_key = {_cell(body.get(ident)): index for index, body in prepared}
    rejected += _failed(writer, job, by_key, ident)
    seen = {r.index for r in rejected} | _succeeded(writer, job, by_key, ident)
    rejected += [RejectedRecord(i, f"Salesforce Bulk API job {job} did not report this record")
                 for i, _ in prepared if i not in seen]
    return WriteResult(sorted(rejected, key=lambda r: r.index))


def _csv(writer: SalesforceWriter, prepared: list[tuple[int, dict[str, Any]]]
         ) -> tuple[list[str], str]:
    columns: list[str] = []
    rows = []
    for _, body in prepared:
        row = {}
        for name, value in body.items():
            if isinstance(value, dict):  # a relationship by external id
                ((ext, value),) = value.items()
                name = f"{name}.{ext}"
            row[name] = "#N/A" if value is None else _cell(value)
            if name not in columns:
                columns.append(name)
        rows.append(row)
    out = io.StringIO()
    csv_writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", restval="")
    csv_writer.writeheader()
    csv_writer.writerows(rows)
    return columns, out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _create(writer: SalesforceWriter, operation: str) -> str:
    spec: dict[str, Any] = {"object": writer.object.full_name, "operation": operation,
                            "contentType": "CSV", "lineEnding": "LF"}
    if operation == "upsert":
        spec["externalIdFieldName"] = writer.ctx.key_field
    api = writer.destination.api
    return str(writer.destination.call("POST", api("/jobs/ingest"), json=spec).json()["id"])


def _upload(writer: SalesforceWriter, job: str, text: str) -> None:
    api, call = writer.destination.api, writer.destination.call
    call("PUT", api(f"/jobs/ingest/{job}/batches"), content=text.encode("utf-8"),
         headers={"Content-Type": "text/csv"})
    call("PATCH", api(f"/jobs/ingest/{job}"), json={"state": "UploadComplete"})


def _wait(writer: SalesforceWriter, job: str) -> dict[str, Any]:
    api, call = writer.destination.api, writer.destination.call
    pause, waited = writer.destination.bulk_poll_seconds, 0.0
    while True:
        state = dict(call("GET", api(f"/jobs/ingest/{job}")).json())
        if state["state"] in _DONE:
            return state
        if waited > MAX_WAIT_SECONDS:
            raise TransientError(f"Salesforce Bulk API job {job} still {state['state']}"
                                 f" after {waited:.0f} s")
        time.sleep(pause)
        waited += pause
        pause = min(pause * 2, 10.0)


def _results(writer: SalesforceWriter, job: str, kind: str) -> list[dict[str, str]]:
    api = writer.destination.api
    text = writer.destination.call("GET", api(f"/jobs/ingest/{job}/{kind}")).text
    return list(csv.DictReader(io.StringIO(text)))


def _failed(writer: SalesforceWriter, job: str, by_key: dict[str, int],
            ident: str) -> list[RejectedRecord]:
    out = []
    for row in _results(writer, job, "failedResults"):
        index = by_key.get(row.get(ident, ""))
        if index is not None:
            out.append(RejectedRecord(index, _reason(row.get("sf__Error", ""))))
    return out


def _succeeded(writer: SalesforceWriter, job: str, by_key: dict[str, int],
               ident: str) -> set[int]:
    found = set()
    for row in _results(writer, job, "successfulResults"):
        index = by_key.get(row.get(ident, "") if ident != "Id" else row.get("sf__Id", ""))
        if index is None and ident == "Id":
            index = by_key.get(row.get("Id", ""))
        if index is not None:
            found.add(index)
    return found


def _reason(error: str) -> str:
    """``STATUS:message:fields`` as the REST path words it: ``STATUS: message (fields)``."""
    code, _, rest = error.partition(":")
    message, _, fields = rest.rpartition(":")
    if not message:
        return error
    where = "" if fields in ("", "--") else f" ({fields.replace('--', ', ')})"
    return f"{code}: {message}{where}"
