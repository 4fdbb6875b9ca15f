"""Artifact storage in one local directory (or a mount all machines share); writes are fsynced and renamed."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from service.storage.base import Storage


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

    def publish_file(self, key: str, src_path: str | os.PathLike) -> None:
        """Fsync ``src_path`` and rename it to ``key`` (a file in ``temp_dir()``: the same file system); a copy
        where a rename cannot cross file systems."""
        dest = self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(src_path, "rb+") as f:
            os.fsync(f.fileno())
        try:
            os.replace(src_path, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            super().publish_file(key, src_path)
            return
        _fsync_dir(dest.parent)

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

    def local_dir(self) -> Path:
        """The root directory."""
        return self.root

    def upload_local(self, key: str) -> None:
        """Nothing to do: ``local_path(key)`` is the stored file itself."""

