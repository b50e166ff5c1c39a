"""Where a run keeps what lives outside the state database: engine-side snapshots (and,
as they move here, record logs and exports).

Two backends behind one small interface:

* ``LocalStorage``: a directory (``REFLOW_SNAPSHOT_DIR``, default ``REFLOW_HOME/snapshots``),
  the embedded default. A snapshot is used in place: nothing is copied.
* ``S3Storage``: S3-compatible object storage, chosen by ``REFLOW_STORAGE_URL=s3://bucket/prefix``
  and configured by the standard AWS variables (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``), which boto3 reads itself.
  A run checks a snapshot out into a private working file and checks it back in with one
  PUT, which S3 applies atomically: a run killed before its check-in leaves the previous
  snapshot in place, never a half-written one that the next run would trust.

boto3 is the object-store library because it is already a runtime dependency (the S3
destination uses it), it honours every standard AWS variable including
``AWS_ENDPOINT_URL`` for MinIO/moto, and its managed transfers stream large snapshots in
parts without holding them in memory.

This module is a leaf: it imports nothing of the service.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


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
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # A store that does not answer must fail a run quickly, not hang it.
            config = Config(connect_timeout=5, read_timeout=60,
                            retries={"max_attempts": 3, "mode": "standard"})
            self._client = boto3.client("s3", config=config)
        return self._client

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
            self.client.download_file(self.bucket, self._name(key), str(path))
        except Exception as exc:
            shutil.rmtree(path.parent, ignore_errors=True)  # no working copy was made
            if _is_missing(exc):
                return None
            raise StorageError(f"storage {self.url}: cannot read {key}: {exc}") from exc
        return path

    def checkin(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._name(key))
        except Exception as exc:
            raise StorageError(f"storage {self.url}: cannot write {key}: {exc}") from exc
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)

    def release(self, key: str, path: Path) -> None:
        """Drop the private working copy; the object is unchanged, so no upload."""
        shutil.rmtree(path.parent, ignore_errors=True)

    def upload(self, path: Path, key: str) -> None:
        """Put a copy of ``path`` as ``key`` (the local file stays)."""
        try:
            self.client.upload_file(str(path), self.bucket, self._name(key))
        except Exception as exc:
            raise StorageError(f"storage {self.url}: cannot write {key}: {exc}") from exc

    def download(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            self.client.download_file(self.bucket, self._name(key), str(tmp))
            os.replace(tmp, path)  # a reader never sees half a file
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"storage {self.url}: cannot read {key}: {exc}") from exc

    def read(self, key: str) -> bytes:
        """A small object's content."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
            return bytes(body.read())
        except Exception as exc:
            raise StorageError(f"storage {self.url}: cannot read {key}: {exc}") from exc

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def delete_prefix(self, prefix: str) -> int:
        names = [self._name(key) for key in self.keys(prefix)]
        for start in range(0, len(names), 1000):
            chunk = names[start:start + 1000]
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": n} for n in chunk]}
            )
        return len(names)

    def keys(self, prefix: str = "") -> Iterator[str]:
        for item in self._objects(prefix):
            yield item["Key"][len(self._name("")):]

    def top_level(self) -> set[str]:
        """The first path segments of the keys (``runs/<id>/...`` -> the ids)."""
        paginator = self.client.get_paginator("list_objects_v2")
        base = self._name("")
        names: set[str] = set()
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
            names |= {p["Prefix"][len(base):].strip("/") for p in page.get("CommonPrefixes", [])}
        return names

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._name(prefix)):
            yield from page.get("Contents", [])

    def usage(self) -> Usage:
        sizes = [int(item["Size"]) for item in self._objects("")]
        return Usage(len(sizes), sum(sizes))

    def check_writable(self) -> None:
        key = f".probe-{uuid.uuid4().hex}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=b"")
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            raise StorageError(f"storage {self.url} is not writable: {exc}") from exc


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
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def open_storage(url: str | None, *, local_root: Path, work_dir: Path) -> Storage:
    """The backend ``url`` names; the local directory when it is unset."""
    if not url:
        return LocalStorage(local_root)
    if url.startswith("s3://"):
        return S3Storage(url, work_dir)
    if url.startswith("file://"):
        return LocalStorage(Path(urlsplit(url).path))
    raise StorageError(f"REFLOW_STORAGE_URL {url!r}: use s3://bucket/prefix or file:///path")
