"""Where a run keeps what lives outside the state database: engine-side snapshots (and,
as they move here, record logs and exports).

Two backends behind one small interface:

* ``LocalStorage``: a directory (``REFLOW_SNAPSHOT_DIR``, default ``REFLOW_HOME/snapshots``),
  the embedded default. A snapshot is used in place: nothing is copied.
* ``S3Storage``: S3-compatible object storage, chosen by ``REFLOW_STORAGE_URL=s3://bucket/prefix``
  and configured by the standard AWS variables (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``), which obstore reads itself.
  A run checks a snapshot out into a private working file and checks it back in with one
  PUT, which S3 applies atomically: a run killed before its check-in leaves the previous
  snapshot in place, never a half-written one that the next run would trust.

The object-store library is obstore (Rust's ``object_store``): it reads the standard
AWS variables itself, including ``AWS_ENDPOINT_URL`` for MinIO/moto, streams large
snapshots in parts without holding them in memory, and costs a run ~7 MB where boto3
cost ~37 MB (botocore's service models): most of what a run with its snapshot in S3
took over one with it on the local disk. Unlike boto3 it does not read ``~/.aws``
profile files: credentials come from the variables, or from the instance's or pod's role.

This module is a leaf: it imports nothing of the service.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from obstore import ObjectMeta

log = logging.getLogger(__name__)

#: Parts of a multipart upload or download, and how many are in flight at once: this
#: bounds the memory a transfer takes (a 1M-row snapshot is ~14 MB).
PART_BYTES = 8 * 2**20
PARTS_IN_FLIGHT = 2


class StorageError(Exception):
    """The object store could not be read or written; the message names its URL."""


@dataclass(frozen=True)
class Usage:
    objects: int
    bytes: int


class Storage(Protocol):
    url: str

    def checkout(self, key: str) -> Path | None:
        """A local working file for ``key``: the object's content, or ``None`` when there
        is no such object (the returned path is then where a new one may be written, see
        ``working_path``)."""

    def working_path(self, key: str) -> Path: ...

    def checkin(self, key: str, path: Path) -> None:
        """Make ``path``'s content the object ``key``, atomically."""

    def release(self, key: str, path: Path) -> None:
        """The run is done with ``path`` and changed nothing in it: ``key`` stays as it is."""

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def keys(self, prefix: str = "") -> Iterator[str]: ...

    def usage(self) -> Usage: ...

    def check_writable(self) -> None:
        """Raise ``StorageError`` naming the URL when a probe object cannot be written."""


class LocalStorage:
    """A directory; objects are files used in place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def working_path(self, key: str) -> Path:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def checkout(self, key: str) -> Path | None:
        path = self.working_path(key)
        return path if path.exists() else None

    def checkin(self, key: str, path: Path) -> None:
        target = self.root / key
        if path != target:
            os.replace(path, target)

    def release(self, key: str, path: Path) -> None:
        """Used in place: nothing to drop."""

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        removed = 0
        for key in list(self.keys(prefix)):
            self.delete(key)
            removed += 1
        return removed

    def keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.exists():
            return
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix):
                yield key

    def usage(self) -> Usage:
        sizes = [(self.root / key).stat().st_size for key in self.keys()]
        return Usage(len(sizes), sum(sizes))

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"storage {self.url} is not writable: {exc}") from exc


class S3Storage:
    """``s3://bucket/prefix``: objects under the prefix, checked out into ``work_dir``."""

    def __init__(self, url: str, work_dir: Path) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise StorageError(f"storage URL {url!r} is not of the form s3://bucket/prefix")
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.work_dir = work_dir
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from obstore.store import S3Store

            # Credentials, region and endpoint come from the standard AWS variables,
            # which obstore reads itself; a plain-HTTP endpoint (MinIO, moto) must be
            # allowed explicitly.
            endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3")
                        or os.environ.get("AWS_ENDPOINT_URL", ""))
            # A store that does not answer must fail a run quickly, not hang it.
            self._store = S3Store(
                self.bucket,
                client_options={"connect_timeout": "5s", "timeout": "60s",
                                "allow_http": endpoint.startswith("http://")},
                retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=60),
                              "backoff": {"init_backoff": timedelta(milliseconds=100),
                                          "max_backoff": timedelta(seconds=5), "base": 2}},
            )
        return self._store

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def working_path(self, key: str) -> Path:
        # Private per checkout: two runs of different syncs never share a working file,
        # and a run of the same sync on another machine has its own disk anyway.
        directory = self.work_dir / uuid.uuid4().hex
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return directory / Path(key).name

    def checkout(self, key: str) -> Path | None:
        path = self.working_path(key)
        try:
            self._get_into(key, path)
        except Exception as exc:
            shutil.rmtree(path.parent, ignore_errors=True)  # no working copy was made
            if _is_missing(exc):
                return None
            raise StorageError(f"storage {self.url}: cannot read {key}: {_brief(exc)}") from exc
        return path

    def checkin(self, key: str, path: Path) -> None:
        try:
            self.upload(path, key)
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)

    def release(self, key: str, path: Path) -> None:
        """Drop the private working copy; the object is unchanged, so no upload."""
        shutil.rmtree(path.parent, ignore_errors=True)

    def upload(self, path: Path, key: str) -> None:
        """Put a copy of ``path`` as ``key`` (the local file stays): one PUT, or for a
        large file a multipart upload, which S3 completes atomically."""
        import obstore

        try:
            if path.stat().st_size <= PART_BYTES:
                # One PUT of the bytes read here: given the path, obstore buffers the
                # file on its own threads, whose memory stays with them (a 4 MB PUT
                # raised a process's peak by 12 MB, the bytes by 1 MB).
                obstore.put(self.store, self._name(key), path.read_bytes())
            else:
                obstore.put(self.store, self._name(key), path, chunk_size=PART_BYTES,
                            max_concurrency=PARTS_IN_FLIGHT)
        except Exception as exc:
            raise StorageError(f"storage {self.url}: cannot write {key}: {_brief(exc)}") from exc

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            self._get_into(key, tmp)
            os.replace(tmp, path)  # a reader never sees half a file
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"storage {self.url}: cannot read {key}: {_brief(exc)}") from exc

    def _get_into(self, key: str, path: Path) -> None:
        import obstore

        result = obstore.get(self.store, self._name(key))
        with open(path, "wb") as out:
            for chunk in result.stream(min_chunk_size=PART_BYTES):
                out.write(chunk)

    def read(self, key: str) -> bytes:
        """A small object's content."""
        import obstore

        try:
            return bytes(obstore.get(self.store, self._name(key)).bytes())
        except Exception as exc:
            raise StorageError(f"storage {self.url}: cannot read {key}: {_brief(exc)}") from exc

    def delete(self, key: str) -> None:
        import obstore

        obstore.delete(self.store, self._name(key))

    def delete_prefix(self, prefix: str) -> int:
        import obstore

        names = [self._name(key) for key in self.keys(prefix)]
        if names:
            obstore.delete(self.store, names)  # batched by the library
        return len(names)

    def keys(self, prefix: str = "") -> Iterator[str]:
        for item in self._objects(prefix):
            yield item["path"][len(self._name("")):]

    def top_level(self) -> set[str]:
        """The first path segments of the keys (``runs/<id>/...`` -> the ids)."""
        import obstore

        base = self._name("")
        listing = obstore.list_with_delimiter(self.store, base.rstrip("/") or None)
        return {p[len(base):].strip("/") for p in listing["common_prefixes"]}

    def _objects(self, prefix: str) -> Iterator[ObjectMeta]:
        import obstore

        # obstore lists whole path segments under a prefix: a key prefix that ends
        # inside a segment (``sync_1`` of ``sync_1.duckdb``) is matched here.
        name = self._name(prefix)
        directory = name.rsplit("/", 1)[0] if "/" in name else ""
        for page in obstore.list(self.store, directory or None):
            yield from (item for item in page if item["path"].startswith(name))

    def usage(self) -> Usage:
        sizes = [int(item["size"]) for item in self._objects("")]
        return Usage(len(sizes), sum(sizes))

    def check_writable(self) -> None:
        import obstore

        name = self._name(f".probe-{uuid.uuid4().hex}")
        try:
            obstore.put(self.store, name, b"")
            obstore.delete(self.store, name)
        except Exception as exc:
            raise StorageError(f"storage {self.url} is not writable: {_brief(exc)}") from exc


class RunFiles:
    """Per-run files under ``home/runs/<run id>/``: the succeeded-record logs
    (``succeeded/``, engine/records.py) and records exports (``export/<token>/``,
    services/records.py).

    Alone, that directory is the truth. With a shared store, each file a process writes is
    put under the store's ``runs/`` prefix and its local copy dropped; a process that reads
    a run's files (the records API or an export download, on any machine) fetches the ones
    it lacks first."""

    def __init__(self, home: Path, shared: S3Storage | None) -> None:
        self.root = home / "runs"
        self.shared = shared

    def saved(self, path: Path) -> None:
        """``path`` (under ``root``) is complete: share it."""
        if self.shared is not None:
            self.shared.upload(path, path.relative_to(self.root).as_posix())
            path.unlink()

    def fetch(self, run_id: int, folder: str = "succeeded") -> None:
        """Bring ``<run id>/<folder>/`` here, file by file, the ones not here yet."""
        if self.shared is None:
            return
        for key in self.shared.keys(f"{run_id}/{folder}/"):
            local = self.root / key
            if not local.exists():
                self.shared.download(key, local)

    def delete_folder(self, run_id: int, folder: str) -> None:
        shutil.rmtree(self.root / str(run_id) / folder, ignore_errors=True)
        if self.shared is not None:
            self.shared.delete_prefix(f"{run_id}/{folder}/")

    def shared_keys(self) -> Iterator[str]:
        """Every key in the shared store (none without one): a full listing, for the
        retention job only."""
        if self.shared is not None:
            yield from self.shared.keys()

    def read_shared(self, key: str) -> bytes:
        assert self.shared is not None
        return self.shared.read(key)

    def run_ids(self) -> set[int]:
        """Runs that have files here or in the shared store."""
        names = {p.name for p in self.root.iterdir()} if self.root.exists() else set()
        if self.shared is not None:
            names |= self.shared.top_level()
        return {int(n) for n in names if n.isdigit()}

    def delete(self, run_id: int) -> None:
        shutil.rmtree(self.root / str(run_id), ignore_errors=True)
        if self.shared is not None:
            self.shared.delete_prefix(f"{run_id}/")

    def usage(self) -> Usage:
        if self.shared is not None:
            return self.shared.usage()
        return LocalStorage(self.root).usage()


def _is_missing(exc: Exception) -> bool:
    from obstore.exceptions import NotFoundError

    # obstore raises FileNotFoundError for a missing object (NotFoundError in some
    # releases); the working path is always created before, so it is the object.
    return isinstance(exc, FileNotFoundError | NotFoundError)


def _brief(exc: Exception) -> str:
    """obstore's message without the response body and retry trace it appends."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def open_storage(url: str | None, *, local_root: Path, work_dir: Path) -> Storage:
    """The backend ``url`` names; the local directory when it is unset."""
    if not url:
        return LocalStorage(local_root)
    if url.startswith("s3://"):
        return S3Storage(url, work_dir)
    if url.startswith("file://"):
        return LocalStorage(Path(urlsplit(url).path))
    raise StorageError(f"REFLOW_STORAGE_URL {url!r}: use s3://bucket/prefix or file:///path")
