"""Artifact storage: keys like ``datasets/{id}/X.npy`` map to files; every write is atomic."""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Storage(ABC):
    """Interface of the artifact store (local directory today, a shared mount when scaled out)."""

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """The file behind ``key`` (it may not exist yet)."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""

    @abstractmethod
    def put_file(self, key: str, src_path: str | os.PathLike) -> None:
        """Copy the file ``src_path`` under ``key`` atomically."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """Open ``key`` for binary reading."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Remove every key under ``prefix`` (a folder like ``datasets/{id}``)."""

    @abstractmethod
    def atomic_writer(self, key: str) -> "contextmanager[Path]":
        """Context manager yielding a temporary path; on clean exit it is fsynced and renamed to ``key``."""

    def save_array(self, key: str, arr: np.ndarray) -> None:
        """Store ``arr`` as ``.npy`` (no pickle) atomically."""
        with self.atomic_writer(key) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(arr), allow_pickle=False)

    def load_array(self, key: str, mmap: bool = True) -> np.ndarray:
        """Load a ``.npy`` array, memory-mapped read-only by default."""
        return np.load(self.local_path(key), mmap_mode="r" if mmap else None, allow_pickle=False)


class LocalStorage(Storage):
    """Files under one root directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)

    def local_path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in ("..", ".", "") for p in parts) or parts[0] == ".tmp":
            raise ValueError(f"invalid storage key {key!r}")
        return self.root.joinpath(*parts)

    @contextmanager
    def atomic_writer(self, key: str) -> Iterator[Path]:
        dest = self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        finally:
            if tmp.exists():
                tmp.unlink()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self.atomic_writer(key) as tmp:
            tmp.write_bytes(data)

    def put_file(self, key: str, src_path: str | os.PathLike) -> None:
        with self.atomic_writer(key) as tmp:
            shutil.copyfile(src_path, tmp)

    def open_read(self, key: str) -> BinaryIO:
        return open(self.local_path(key), "rb")

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def delete_prefix(self, prefix: str) -> None:
        path = self.local_path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)

    def temp_dir(self) -> Path:
        """A scratch directory on the same file system (uploads are streamed here, then renamed)."""
        return self._tmp


def make_storage(settings) -> Storage:
    """The storage configured by ``settings.storage_url`` (a directory path, file://path, or s3://bucket/prefix)."""
    url = settings.storage_url
    if url.startswith("s3://"):  # shared object storage for scale-out (service/storage_s3.py)
        from service.storage_s3 import S3Storage

        return S3Storage(url, cache_dir=Path(settings.data_dir) / "s3-cache")
    if url.startswith("file://"):
        url = url[len("file://"):]
    return LocalStorage(url)
