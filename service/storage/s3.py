"""Artifact storage on S3 (``MLP_STORAGE_URL=s3://bucket/prefix``) through fsspec/s3fs.

Atomicity: every object is written locally first and then sent with one PUT (a multipart upload for big files,
which S3 also publishes only on completion), so a reader sees the old object, or the whole new one, never part.
``local_path(key)`` gives a local copy for code that needs a file (memory-mapped arrays, checkpoints): it is
downloaded into a cache under ``MLP_DATA_DIR`` and refreshed when the object's ETag changes. Code that writes
to ``local_path`` calls ``upload_local(key)`` afterwards (the training worker does, for checkpoints and models).

Credentials come from the usual AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``); the endpoint of an S3-compatible store such as MinIO or moto from
``Settings.storage_endpoint_url`` (``MLP_STORAGE_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from service.storage.base import Storage
from service.storage.local import LocalStorage


class S3Storage(Storage):
    """Keys map to objects ``s3://bucket/prefix/{key}``; local copies live in ``cache_dir``."""

    def __init__(self, url: str, cache_dir: str | os.PathLike, endpoint_url: str | None = None):
        import s3fs

        if not url.startswith("s3://"):
            raise ValueError(f"MLP_STORAGE_URL: expected s3://bucket/prefix, got {url!r}")
        self.root = url[len("s3://"):].strip("/")
        if not self.root:
            raise ValueError(f"MLP_STORAGE_URL: {url!r} names no bucket")
        client_kwargs = {"endpoint_url": endpoint_url} if endpoint_url else {}
        self.fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, use_listings_cache=False,
                                    skip_instance_cache=True)
        # The cache reuses LocalStorage's key checks and atomic renames.
        self.cache = LocalStorage(cache_dir)

    def _path(self, key: str) -> str:
        self.cache.local_path(key)  # validates the key (no '..', no absolute paths)
        return f"{self.root}/{key}"

    def _etag(self, key: str) -> str | None:
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError:
            return None
        return str(info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("size"))

    # -- reads --------------------------------------------------------------------------------------------
    def local_path(self, key: str) -> Path:
        """A local copy of the object, fresh as of now (a path that does not exist if the object does not)."""
        path = self.cache.local_path(key)
        marker = path.with_name(path.name + ".etag")
        etag = self._etag(key)
        if etag is None:
            path.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
            return path
        if path.is_file() and marker.is_file() and marker.read_text() == etag:
            return path
        with self.cache.atomic_writer(key) as tmp:
            self.fs.get_file(self._path(key), str(tmp))
        marker.write_text(etag)
        return path

    def open_read(self, key: str) -> BinaryIO:
        return open(self.local_path(key), "rb")

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

    # -- writes (one PUT each) --------------------------------------------------------------------------------
    @contextmanager
    def atomic_writer(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        fd, name = tempfile.mkstemp(prefix="upload.", suffix=".tmp", dir=self.cache.temp_dir())
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            self.fs.put_file(str(tmp), path)
        finally:
            tmp.unlink(missing_ok=True)

    def write_bytes(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data)

    def put_file(self, key: str, src_path: str | os.PathLike) -> None:
        self.fs.put_file(str(src_path), self._path(key))

    def upload_local(self, key: str) -> None:
        """Publish the file written at ``local_path(key)`` as the object ``key`` (one PUT)."""
        path = self.cache.local_path(key)
        self.fs.put_file(str(path), self._path(key))
        etag = self._etag(key)
        if etag:
            path.with_name(path.name + ".etag").write_text(etag)

    def delete_prefix(self, prefix: str) -> None:
        prefix = prefix.rstrip("/")
        try:
            self.fs.rm(self._path(prefix), recursive=True)
        except FileNotFoundError:
            pass
        local = self.cache.local_path(prefix)
        if local.is_dir():
            shutil.rmtree(local, ignore_errors=True)
        else:
            local.unlink(missing_ok=True)

    def temp_dir(self) -> Path:
        """Local scratch space for streamed uploads."""
        return self.cache.temp_dir()

    def local_dir(self) -> Path:
        """The cache of local copies."""
        return self.cache.root
