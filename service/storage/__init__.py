"""Artifact storage: the ``Storage`` interface, a local directory and S3, chosen by ``MLP_STORAGE_URL``."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings
from service.storage.base import Storage
from service.storage.local import LocalStorage
from service.storage.s3 import S3Storage


def make_storage(settings: Settings) -> Storage:
    """The storage configured by ``settings.storage_url`` (a directory path, file://path, or s3://bucket/prefix)."""
    url = settings.storage_url
    if url.startswith("s3://"):  # shared object storage for scale-out
        return S3Storage(url, cache_dir=Path(settings.data_dir) / "s3-cache",
                         endpoint_url=settings.storage_endpoint_url)
    if url.startswith("file://"):
        url = url[len("file://"):]
    return LocalStorage(url)


__all__ = ["LocalStorage", "S3Storage", "Storage", "make_storage"]
