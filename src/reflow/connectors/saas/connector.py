"""The declarative base of SaaS destinations and their writer.

A connector subclasses ``SaasDestination`` and declares its ``Vendor`` (production URL,
documented limits, records per request, concurrency), its credentials model, how it
authenticates (``make_auth``), a cheap authenticated call (``verify``) and how it lists
objects (``load_objects``). Its writer subclasses ``SaasWriter`` and says which vendor
calls a batch becomes (``calls``) and which records each answer refused (``results``).
Everything else — pacing, retries, token refresh, concurrency, partial acknowledgement,
caching of metadata, the connection test — comes from here.
"""

from __future__ import annotations

import abc
import base64
import datetime as dt
import decimal
import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import orjson
import pyarrow as pa

from reflow.connectors.base import (
    Action,
    BatchWriter,
    DestinationConnector,
    DestinationObject,
    RejectedRecord,
    TestStep,
    WriteContext,
    WriteResult,
    run_steps,
    secret_field_names,
)
from reflow.connectors.errors import (
    BatchRejected,
    ConnectorError,
    ObjectNotFound,
    TransientError,
)
from reflow.connectors.saas.auth import Auth
from reflow.connectors.saas.client import (
    DefaultPolicy,
    QuotaExhausted,
    VendorClient,
    open_client,
)
from reflow.connectors.saas.hooks import HooksHolder
from reflow.connectors.saas.metadata import MetadataCache
from reflow.connectors.saas.ratelimit import Limit, RateLimiter


@dataclass(frozen=True)
class Vendor:
    """What a vendor's documentation says, in one place."""

    name: str
    #: The production API URL, used when the credentials give none.
    base_url: str
    #: Documented request limits, paced by the connection's shared limiter.
    limits: tuple[Limit, ...] = ()
    #: Most records one request may carry.
    batch_size: int = 100
    #: Requests one writer keeps in flight.
    concurrency: int = 4
    max_retries: int = 5
    timeout: float = 60.0


@dataclass
class Call:
    """One vendor request carrying some records of a batch."""

    method: str
    path: str
    #: Indices, within the written batch, of the records this call carries.
    indices: list[int]
    #: The JSON body; encoded once, with ``encode_json``.
    json: Any = None
    #: A body already encoded as JSON (when its size had to be known: Segment).
    content: bytes | None = None
    params: dict[str, Any] | None = None
    #: The connector's own notes for reading the answer (the inputs in order, ...).
    context: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class SaasDestination(HooksHolder, DefaultPolicy, DestinationConnector):
    """Base of SaaS destinations; see the module docstring for what a subclass declares."""

    vendor: ClassVar[Vendor]
    writer_class: ClassVar[type[SaasWriter]]
    #: Reflow's type words for the vendor's own (added to ``metadata.COMMON_TYPES``).
    vendor_types: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._client: VendorClient | None = None
        self.metadata = MetadataCache()

    # -- what a connector declares -------------------------------------------------------
    def base_url(self) -> str:
        """The API URL: the credentials' ``base_url`` or the vendor's production one."""
        return str(getattr(self.config, "base_url", None) or self.vendor.base_url).rstrip("/")

    @abc.abstractmethod
    def make_auth(self, http: httpx.Client) -> Auth:
        """The credentials as an ``Auth``; ``http`` serves token endpoints."""

    @abc.abstractmethod
    def verify(self) -> None:
        """One cheap authenticated call; raises with the vendor's message."""

    @abc.abstractmethod
    def load_objects(self) -> list[DestinationObject]:
        """Every object with its fields, from the vendor's metadata API."""

    def account_identity(self) -> str:
        """What tells one vendor account from another (never stored: it is digested into
        the rate-limit key). Default: the secret credentials."""
        secrets = sorted(secret_field_names(type(self.config)))
        values = [getattr(self.config, name, None) for name in secrets]
        return "|".join(v.get_secret_value() for v in values if v is not None)

    # -- provided ------------------------------------------------------------------------
    @property
    def vendor_name(self) -> str:  # type: ignore[override]
        return self.vendor.name

    @property
    def client(self) -> VendorClient:
        if self._client is None:
            http = open_client(base_url=self.base_url(), timeout=self.vendor.timeout,
                               max_connections=max(8, self.vendor.concurrency * 2))
            self._client = VendorClient(
                http=http, auth=self.make_auth(http), policy=self,
                limiter=RateLimiter(self.rate_key(), self.vendor.limits),
                max_retries=self.vendor.max_retries,
            )
        return self._client

    def rate_key(self) -> str:
        """The connection's bucket name: every connector of one account shares it."""
        raw = f"{self.service_name}|{self.base_url()}|{self.account_identity()}"
        return f"{self.service_name}:{hashlib.sha256(raw.encode()).hexdigest()[:24]}"

    def test_connection(self) -> list[TestStep]:
        return run_steps([("Verify connectivity", self.verify)])

    def list_objects(self) -> list[DestinationObject]:
        return self.metadata.get("objects", self.load_objects)

    def get_object(self, full_name: str) -> DestinationObject:
        for obj in self.list_objects():
            if obj.full_name == full_name:
                return obj
        raise ObjectNotFound(f"{self.vendor.name} has no object {full_name!r}")

    def open_writer(self, ctx: WriteContext) -> BatchWriter:
        return self.writer_class(self, ctx, self.get_object(ctx.object_name))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class SaasWriter(BatchWriter):
    """Writes batches as vendor calls run ``vendor.concurrency`` at a time.

    Acknowledgement is per call: when some calls of a write fail after their retries
    and others succeeded, the failed calls' records are rejected with the reason (the
    engine keeps them out of the snapshot, the next run sends them again) and the
    acknowledged ones stay acknowledged. A spent quota stops the writer: the rest of
    the batch is rejected as not sent, and the next ``write`` or ``close`` raises
    ``QuotaExhausted``, so the run fails with the vendor's message. When every call of
    a write fails, the first failure is raised (the engine retries transient ones).
    """

    def __init__(self, destination: SaasDestination, ctx: WriteContext,
                 obj: DestinationObject) -> None:
        self.destination, self.ctx, self.object = destination, ctx, obj
        self.client = destination.client
        self.vendor = destination.vendor
        self.stopped: QuotaExhausted | None = None
        self._pool = ThreadPoolExecutor(self.vendor.concurrency, thread_name_prefix="saas")

    @abc.abstractmethod
    def call_for(self, records: list[dict[str, Any]], indices: list[int], action: Action) -> Call:
        """One vendor request carrying ``records[i] for i in indices``."""

    def refuse(self, record: dict[str, Any], action: Action) -> str | None:
        """Why ``record`` cannot be sent at all (a message over the vendor's size limit),
        or None. Refused records are rejected with this reason, never sent."""
        return None

    def calls(
        self, records: list[dict[str, Any]], action: Action
    ) -> Iterable[Call | RejectedRecord]:
        """The vendor calls carrying ``records``, and the records refused before sending.
        Default: ``refuse`` each, then ``call_for`` chunks of ``vendor.batch_size``."""
        sendable: list[int] = []
        for index, record in enumerate(records):
            reason = self.refuse(record, action)
            if reason is None:
                sendable.append(index)
            else:
                yield RejectedRecord(index, reason)
        for indices in chunks(sendable, self.vendor.batch_size):
            yield self.call_for(records, indices, action)

    def results(self, call: Call, response: httpx.Response) -> list[RejectedRecord]:
        """The records ``response`` refused. Default: a 2xx accepts them all; a 400
        refuses the request for its data without saying which record, so it is split
        (``BatchRejected``); anything else refuses them all with the vendor's message.
        Raise ``BatchRejected`` for a vendor answer that refuses a whole request because
        of one record: the request is halved until that record is alone."""
        if response.is_success:
            return []
        reason = self.destination.error_message(response)
        if response.status_code == 400:
            raise BatchRejected(reason)
        return [RejectedRecord(i, reason) for i in call.indices]

    def records(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """The batch as the dicts ``calls`` reads. Default: ``json_records``; a vendor
        that wants every value as text (HubSpot) converts whole columns instead."""
        return json_records(batch)

    def write(self, batch: pa.RecordBatch, action: Action) -> WriteResult:
        if self.stopped is not None:
            raise self.stopped
        records = self.records(batch)
        rejected: list[RejectedRecord] = []
        calls: list[Call] = []
        futures = []
        # Each call goes out as soon as it is built: building the next overlaps sending.
        for item in self.calls(records, action):
            if isinstance(item, RejectedRecord):
                rejected.append(item)
            else:
                calls.append(item)
                futures.append(self._pool.submit(self.send, item, records, action))
        failures: list[tuple[Call, ConnectorError]] = []
        for call, future in zip(calls, futures, strict=True):
            try:
                rejected += future.result()
            except (TransientError, QuotaExhausted) as exc:
                failures.append((call, exc))
        rejected += self._failed(calls, failures)
        return WriteResult(sorted(rejected, key=lambda r: r.index))

    def _failed(self, calls: list[Call], failures: list[tuple[Call, ConnectorError]]
                ) -> list[RejectedRecord]:
        for _, exc in failures:
            if isinstance(exc, QuotaExhausted):
                self.stopped = self.stopped or exc
        if failures and len(failures) == len(calls):
            raise failures[0][1]
        return [RejectedRecord(i, f"not acknowledged: {exc}")
                for call, exc in failures for i in call.indices]

    def send(self, call: Call, records: list[dict[str, Any]], action: Action
             ) -> list[RejectedRecord]:
        """Send one call; a ``BatchRejected`` answer is bisected down to the record."""
        try:
            return self.results(call, self.request(call))
        except BatchRejected as exc:
            if len(call.indices) == 1:
                return [RejectedRecord(call.indices[0], str(exc))]
            half = len(call.indices) // 2
            return [rejected for part in (call.indices[:half], call.indices[half:])
                    for rejected in self.send(self.call_for(records, part, action),
                                              records, action)]

    def request(self, call: Call) -> httpx.Response:
        content = call.content
        if content is None and call.json is not None:
            content = encode_json(call.json)
        headers = {**call.headers, **({"Content-Type": "application/json"} if content else {})}
        return self.client.request(call.method, call.path, content=content,
                                   params=call.params, headers=headers)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self.stopped is not None:
            raise self.stopped


# -- records -----------------------------------------------------------------------------

def json_records(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The batch's rows as dicts of JSON-ready values (dates and times as ISO 8601
    text, UTC ``Z`` for timestamps; decimals as text, so no digit is lost)."""
    rows = batch.to_pylist()
    odd = [f.name for f in batch.schema if _needs_conversion(f.type)]
    for row in rows:
        for name in odd:
            row[name] = jsonable(row[name])
    return rows


def _needs_conversion(arrow_type: pa.DataType) -> bool:
    return not (pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
                or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
                or pa.types.is_boolean(arrow_type) or pa.types.is_null(arrow_type))


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value, default=jsonable)


def chunks(indices: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield indices[start:start + size]
