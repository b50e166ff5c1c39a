"""Objects and fields from a vendor's metadata API.

A connector turns the vendor's descriptions into ``DestinationObject`` /
``DestinationField`` (``base.py``), where:

* ``type`` is one of Reflow's field types (``string``, ``integer``, ``float``,
  ``decimal``, ``boolean``, ``date``, ``date_time``, ``object``; ``[]`` suffix for arrays),
  from the vendor's own through ``field_type``;
* ``required``, ``createable``, ``updateable`` are the vendor's;
* ``identifier`` marks what can identify a record for upsert/update (a unique field, an
  external id, the vendor's record id);
* ``lookup_object`` is the object a reference field points to (Salesforce
  ``referenceTo``, a HubSpot association).

``MetadataCache`` keeps what was read for a while: a sync run, a sync save and the
object endpoints each ask for the same objects several times, and vendors count
metadata calls against the same limits as writes. ``paginate`` follows a vendor's
cursor. A connector that can create fields (HubSpot properties, Salesforce custom
fields through the Metadata API) implements ``FieldCreator``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from reflow.connectors.base import DestinationField, DestinationObject

if TYPE_CHECKING:  # the engine imports this module: it must not cost an httpx import
    import httpx

T = TypeVar("T")

#: Vendor type words -> Reflow field types. Connectors extend it with their own words.
COMMON_TYPES: dict[str, str] = {
    "string": "string", "text": "string", "textarea": "string", "email": "string",
    "phone": "string", "phone_number": "string", "url": "string", "id": "string",
    "picklist": "string", "enumeration": "string", "select": "string", "reference": "string",
    "int": "integer", "integer": "integer", "long": "integer",
    "double": "float", "float": "float", "number": "float", "percent": "float",
    "currency": "decimal", "decimal": "decimal",
    "bool": "boolean", "boolean": "boolean", "booleancheckbox": "boolean",
    "date": "date", "datetime": "date_time", "date_time": "date_time", "time": "string",
    "object": "object", "json": "object",
}


def field_type(vendor_type: str | None, extra: Mapping[str, str] | None = None) -> str:
    """Reflow's type for a vendor's type word; unknown words are strings (a vendor
    accepts the text form of anything)."""
    word = (vendor_type or "string").lower()
    return (extra or {}).get(word) or COMMON_TYPES.get(word, "string")


#: Words of source column types (any dialect) -> Reflow field types, for created fields.
_SQL_WORDS = (("bool", "boolean"), ("timestamp", "date_time"), ("datetime", "date_time"),
              ("date", "date"), ("int", "integer"), ("numeric", "decimal"),
              ("decimal", "decimal"), ("double", "float"), ("float", "float"),
              ("real", "float"), ("json", "object"))


def sql_field_type(column_type: str) -> str:
    """The Reflow field type a new field gets for a source column of ``column_type``."""
    lowered = column_type.lower()
    return next((kind for word, kind in _SQL_WORDS if word in lowered), "string")


def paginate(
    fetch: Callable[[str | None], httpx.Response],
    *,
    items: Callable[[Any], list[Any]],
    next_cursor: Callable[[Any], str | None],
    max_pages: int = 1000,
) -> Iterator[Any]:
    """Every item of a cursor-paginated listing: ``fetch(cursor)`` gets one page
    (``None`` for the first), ``items`` and ``next_cursor`` read it."""
    cursor: str | None = None
    for _ in range(max_pages):
        body = fetch(cursor).json()
        yield from items(body)
        cursor = next_cursor(body)
        if not cursor:
            return


class MetadataCache:
    """Values by key for ``ttl`` seconds; thread-safe, one loader call per key at a time."""

    def __init__(self, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._values: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], T]) -> T:
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and self.clock() - hit[0] < self.ttl:
                return hit[1]  # type: ignore[no-any-return]
            value = load()
            self._values[key] = (self.clock(), value)
            return value

    def forget(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._values.clear()
            else:
                self._values.pop(key, None)


@runtime_checkable
class FieldCreator(Protocol):
    """A destination that can add fields to an object (for "sync all properties" and
    for mappings to a new field)."""

    def create_field(self, object_name: str, name: str, type: str) -> DestinationField:
        """Create ``name`` of Reflow field ``type`` on ``object_name`` and return it;
        ``TerminalError`` with the vendor's message when it refuses."""


def with_fields(obj: DestinationObject, fields: list[DestinationField]) -> DestinationObject:
    """``obj`` with ``fields`` added (after a field was created)."""
    known = {f.full_name for f in obj.fields}
    return DestinationObject(
        full_name=obj.full_name, label=obj.label,
        supported_operations=obj.supported_operations,
        fields=obj.fields + tuple(f for f in fields if f.full_name not in known),
        allow_custom_fields=obj.allow_custom_fields,
    )
