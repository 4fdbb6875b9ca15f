"""Job execution: the Executor interface and its implementations, chosen by settings.broker_url."""

from __future__ import annotations

from service.executor.base import Executor

__all__ = ["Executor", "make_executor"]


def make_executor(settings, engine, storage) -> Executor:
    """Embedded worker processes by default; a broker URL selects a distributed implementation."""
    if settings.broker_url:
        from service.executor.celery import CeleryExecutor  # added by the scale-out issue

        return CeleryExecutor(settings, engine, storage)
    from service.executor.embedded import EmbeddedExecutor

    return EmbeddedExecutor(settings, engine, storage)
