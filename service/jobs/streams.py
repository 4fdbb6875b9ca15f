"""Event streams of jobs: one shared poller per job feeds every listener of it, and streams are capped.

Without this each open ``/v1/jobs/{id}/events`` polled the database four times a second on its own: 200 streams
were 800 queries a second on the threadpool. Here a ``Feed`` per (owner, job) polls once per SSE_POLL_SECONDS for
all its listeners and wakes them when something changed; it stops when the job ends or its last listener leaves.
``StreamHub.open`` refuses (429) a stream beyond ``max_streams_per_tenant`` or ``max_streams`` in total; sweep event
streams are counted by the same ``StreamHub.count``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from service.errors import TooManyRequests
from service.jobs import service
from service.jobs.schemas import JobRead
from service.jobs.tables import TERMINAL

SSE_POLL_SECONDS = 0.25


def _state(job: JobRead) -> tuple:
    """What a listener sends events for: status, epoch and minibatch (not the ETA, which moves each read)."""
    p = job.progress
    return job.status, job.model_id, job.error, p.epoch if p else None, p.batch if p else None


class Feed:
    """A job's metrics and state as last polled, shared by all listeners; ``changed`` is set on each update."""

    def __init__(self, hub: "StreamHub", owner: str, job_id: str):
        self.hub, self.owner, self.job_id = hub, owner, job_id
        self.metrics: list[dict[str, Any]] = []
        self.job: JobRead | None = None
        self.gone = False            # the job was deleted while streaming
        self.listeners = 0
        self.changed = asyncio.Event()
        self._after = 0

    def _poll(self) -> tuple[JobRead, list[dict[str, Any]]]:
        with self.hub.sessionmaker() as session:
            job, metrics = service.poll(session, owner=self.owner, job_id=self.job_id, since_epoch=self._after)
            return JobRead.from_row(job), metrics

    async def update(self) -> None:
        """One poll; wakes the listeners. Raises NotFound for an unknown job."""
        job, metrics = await run_in_threadpool(self._poll)
        if metrics:
            self.metrics.extend(metrics)
            self._after = max(self._after, max(int(m["epoch"]) for m in metrics))
        before, self.job = self.job, job
        if metrics or before is None or _state(before) != _state(job):  # wake listeners only on news
            event, self.changed = self.changed, asyncio.Event()
            event.set()

    @property
    def ended(self) -> bool:
        return self.gone or (self.job is not None and self.job.status.value in TERMINAL)

    async def run(self) -> None:
        """Poll until the job ends or nobody listens; then leave the hub (a later listener starts afresh)."""
        try:
            while not self.ended:
                await anyio.sleep(SSE_POLL_SECONDS)
                if self.listeners == 0:
                    break
                try:
                    await self.update()
                except Exception:  # noqa: BLE001 - the job was deleted, or the store failed: end the streams
                    self.gone = True
                    event, self.changed = self.changed, asyncio.Event()
                    event.set()
        finally:
            if self.hub.feeds.get((self.owner, self.job_id)) is self:
                del self.hub.feeds[(self.owner, self.job_id)]


class StreamHub:
    """This process's job feeds and stream counts (per tenant and in total)."""

    def __init__(self, sessionmaker, settings):
        self.sessionmaker = sessionmaker
        self.max_total = settings.max_streams
        self.max_per_tenant = settings.max_streams_per_tenant
        self.feeds: dict[tuple[str, str], Feed] = {}
        self.open_total = 0
        self.open_by_owner: Counter[str] = Counter()

    def count(self, owner: str, poll: str = "GET /v1/jobs/{id}") -> None:
        """Count a new stream of ``owner`` (a job's or a sweep's: one cap for both), or TooManyRequests (429) over
        ``max_streams_per_tenant`` or ``max_streams``; ``poll`` is what the message suggests instead. The caller
        calls ``uncount(owner)`` when the stream ends."""
        if self.open_by_owner[owner] >= self.max_per_tenant:
            raise TooManyRequests(f"too many open event streams: tenant {owner} has {self.open_by_owner[owner]}, "
                                  f"the limit is max_streams_per_tenant={self.max_per_tenant} "
                                  f"(MLP_MAX_STREAMS_PER_TENANT); close one or poll {poll}",
                                  headers={"Retry-After": "5"})
        if self.open_total >= self.max_total:
            raise TooManyRequests(f"too many open event streams on this server ({self.open_total}), the limit is "
                                  f"max_streams={self.max_total} (MLP_MAX_STREAMS); poll {poll}",
                                  headers={"Retry-After": "5"})
        self.open_total += 1
        self.open_by_owner[owner] += 1

    async def open(self, owner: str, job_id: str) -> Feed:
        """Count a new stream (429 over a cap) and return its job's feed, polled once already (404 unknown)."""
        self.count(owner)
        try:
            feed = self.feeds.get((owner, job_id))
            if feed is None:
                feed = Feed(self, owner, job_id)
                await feed.update()  # NotFound (404) before the stream starts
                if (owner, job_id) not in self.feeds:
                    self.feeds[(owner, job_id)] = feed
                    feed.listeners += 1
                    asyncio.get_running_loop().create_task(feed.run())
                    return feed
                feed = self.feeds[(owner, job_id)]
            feed.listeners += 1
            return feed
        except BaseException:
            self.uncount(owner)
            raise

    def close(self, feed: Feed) -> None:
        """The stream ended (finished, disconnected, revoked)."""
        feed.listeners -= 1
        self.uncount(feed.owner)

    def uncount(self, owner: str) -> None:
        """A stream counted by ``count`` ended."""
        self.open_total -= 1
        self.open_by_owner[owner] -= 1
        if self.open_by_owner[owner] <= 0:
            del self.open_by_owner[owner]
