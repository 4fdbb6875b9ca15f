"""The artifact store's interface: keys like ``datasets/{id}/X.npy``; every write is atomic."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

import numpy as np


class Storage(ABC):
    """Everything callers use of the artifact store (a local directory, or S3 shared by many machines)."""

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """The file behind ``key`` (it may not exist yet); raises ValueError for an invalid key."""

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
    def atomic_writer(self, key: str) -> AbstractContextManager[Path]:
        """Context manager yielding a temporary path; on clean exit it is published as ``key`` in one step."""

    @abstractmethod
    def temp_dir(self) -> Path:
        """Local scratch space on the store's file system (uploads are streamed here)."""

    @abstractmethod
    def local_dir(self) -> Path:
        """The local directory that holds this store's files (the store itself, or S3's local copies)."""

    @abstractmethod
    def upload_local(self, key: str) -> None:
        """Publish the file just written at ``local_path(key)`` (nothing to do where that path is the store)."""

    def publish_file(self, key: str, src_path: str | os.PathLike) -> None:
        """Store the complete local file ``src_path`` under ``key`` atomically and remove it."""
        try:
            self.put_file(key, src_path)
        finally:
            Path(src_path).unlink(missing_ok=True)

    def save_array(self, key: str, arr: np.ndarray) -> None:
        """Store ``arr`` as ``.npy`` (no pickle) atomically."""
        with self.atomic_writer(key) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(arr), allow_pickle=False)

    def load_array(self, key: str, mmap: bool = True) -> np.ndarray:
        """Load a ``.npy`` array, memory-mapped read-only by default."""
        return np.load(self.local_path(key), mmap_mode="r" if mmap else None, allow_pickle=False)
