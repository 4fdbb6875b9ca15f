"""Distributed executor: Celery (on Redis) delivers job ids; the database decides who trains.

How a job moves:

- The API commits the job ``queued`` and publishes one task ``mlp.train(job_id)``.
- Any ``mlp-service worker`` may receive it. A message is a wake-up, not an assignment: the task *claims* the
  fairest queued job across tenants (``jobs.service.claim_fairest``: fewest running, least recently served, then
  oldest; the job it names when none is queued and that job's lease expired) with one fenced UPDATE
  (``queued`` -> ``running``, ``attempt + 1``); with nothing claimable the task is a no-op. One message is
  published per queued job, so each is taken by some message, in fair order rather than publish order. A
  redelivered or duplicated task can never make a second writer: every write of the trainer carries its
  ``attempt``. When its job has ended, the task claims the fairest queued job at once and trains it too, until
  none is queued (or the worker stops): a warm worker goes from one job to the next without waiting for Celery
  to acknowledge and deliver (the messages of the jobs taken so later find nothing and end as no-ops). An idle
  worker is never starved by this: with a prefetch of one, every message not yet running is in the broker.
- While it trains, the task renews a lease: a heartbeat thread bumps ``jobs.updated_at`` (fenced on the attempt)
  every ``lease_heartbeat_seconds``, and every epoch commit bumps it too.
- Every worker's main process runs a sweeper. A ``running`` job whose lease is older than ``lease_seconds`` (its
  worker was SIGKILLed, lost its machine, or froze) goes back to ``queued`` with a fresh task; the next worker
  claims it (``attempt + 1`` fences the old one out) and resumes from the last epoch checkpoint. A ``queued``
  job older than ``republish_seconds`` while the broker queue is empty lost its message (e.g. the broker
  restarted without its data): the sweeper publishes it again.
- Cancel is a flag in the row; the trainer polls it (at most every 0.2 s, between minibatches).
- When a task has run a job to its end, the worker broadcasts a hint ``("ended", job_id)`` on a fanout exchange
  of the broker (``mlp-hints``: not durable, no queue kept for it); every API process listens and hands it to
  its subscribers (the sweep driver steps at once instead of at its next poll). A hint lost (no API listening,
  the broker restarting) costs only that poll: the truth is in the database.

Broker settings: late acks (``task_acks_late``, ``task_reject_on_worker_lost``) and a prefetch of one, so a
message is removed only after its task returned and an idle worker never waits behind a busy one's prefetch.
Redelivery by the broker (Redis' visibility timeout) is only a second line of defence; the lease is the first.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

from celery import Celery, signals
from kombu import Consumer, Exchange, Queue
from kombu.exceptions import ChannelError
from service.database import make_engine, make_sessionmaker
from service.executor.base import Executor
from service.executor.worker import Worker
from service.jobs import service as jobs_service

log = logging.getLogger("service.executor.celery")

TASK_NAME = "mlp.train"
QUEUE = "mlp-jobs"
# Redis re-delivers an unacknowledged message after this long; the lease normally acts long before.
VISIBILITY_TIMEOUT = 6 * 3600
HEALTH_CACHE_SECONDS = 2.0
# Hints from workers to API processes (a job ended): broadcast, transient, never queued for an absent listener.
HINTS = Exchange("mlp-hints", type="fanout", durable=False, auto_delete=True, delivery_mode="transient")
HINT_RETRY_SECONDS = 2.0  # the API's listener reconnects this long after losing the broker


def make_celery(settings) -> Celery:
    """The Celery app for ``settings.broker_url`` with the one training task."""
    app = Celery("mlp-service", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json", accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5,
                                   "interval_max": 1},
    )
    app.mlp_settings = settings

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def train(task, job_id: str) -> str:
        """Claim ``job_id`` through the database fence and train it; a no-op when someone else holds it."""
        return _runtime(task.app).run(job_id)

    return app


def publish(app: Celery, job_id: str) -> None:
    """Send one wake-up for ``job_id``."""
    app.send_task(TASK_NAME, args=[job_id], queue=QUEUE)


def broadcast_hint(app: Celery, kind: str, job_id: str) -> None:
    """Tell every listening API process that ``job_id`` ended; a failure is logged and forgotten (a hint)."""
    try:
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=0, timeout=1)  # a broker down: give up at once
            producer.publish({"kind": kind, "job_id": job_id}, exchange=HINTS, routing_key="", declare=[HINTS],
                             serializer="json", retry=False)
    except Exception as exc:  # noqa: BLE001 - the sweep driver's poll finds the job's end anyway
        log.debug("hint %s for job %s not sent: %s", kind, job_id, exc)


class HintListener(threading.Thread):
    """An API process's subscription to the workers' hints: ``deliver(kind, job_id)`` for each one."""

    def __init__(self, app: Celery, deliver):
        super().__init__(name="mlp-celery-hints", daemon=True)
        self.app, self.deliver = app, deliver
        self._closing = threading.Event()
        self.listening = threading.Event()  # set once subscribed (the first wait for messages has run)

    def stop(self) -> None:
        self._closing.set()

    def run(self) -> None:
        while not self._closing.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 - broker down: listen again later, the driver polls meanwhile
                log.debug("hint listener: %s; retrying in %.0f s", exc, HINT_RETRY_SECONDS)
                self._closing.wait(HINT_RETRY_SECONDS)

    def _listen(self) -> None:
        queue = Queue(f"mlp-hints.{socket.gethostname()}.{os.getpid()}.{id(self):x}", exchange=HINTS,
                      routing_key="", durable=False, exclusive=True, auto_delete=True)
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0, timeout=2)  # else kombu retries forever: stop() must not wait
            with Consumer(conn, queues=[queue], callbacks=[self._on_message], accept=["json"], no_ack=True):
                while not self._closing.is_set():
                    try:
                        conn.drain_events(timeout=1.0)
                    except socket.timeout:
                        pass
                    self.listening.set()

    def _on_message(self, body, message) -> None:
        try:
            kind, job_id = body["kind"], body["job_id"]
        except (TypeError, KeyError):
            return
        self.deliver(str(kind), str(job_id))


# -- API side -----------------------------------------------------------------------------------------------
class CeleryExecutor(Executor):
    """Publishes job ids to the broker; ``mlp-service worker`` processes anywhere train them."""

    def __init__(self, settings, engine, storage):
        self.settings = settings
        self.app = make_celery(settings)
        self._health: tuple[float, bool] = (0.0, False)
        self._health_lock = threading.Lock()
        self._listeners: list = []
        self._hints: HintListener | None = None

    def start(self) -> None:
        # Nothing to requeue here: other API processes and workers share the database, and expired leases
        # are recovered by the workers' sweepers.
        log.info("distributed executor: jobs go to Celery on %s", _redact(self.settings.broker_url))

    def stop(self) -> None:
        if self._hints is not None:
            self._hints.stop()
            self._hints.join(timeout=2)  # its wait for messages ends within 1 s
            self._hints = None
        try:
            self.app.close()
        except Exception:  # noqa: BLE001
            pass

    def subscribe(self, listener) -> None:
        """``listener(kind, job_id)`` for the workers' hints ('ended'), wherever the workers run: the first
        subscriber starts this process's listener on the broker."""
        self._listeners.append(listener)
        if self._hints is None:
            self._hints = HintListener(self.app, self._deliver)
            self._hints.start()

    def _deliver(self, kind: str, job_id: str) -> None:
        for listener in self._listeners:
            try:
                listener(kind, job_id)
            except Exception:  # noqa: BLE001 - one listener's bug must not stop the others' hints
                log.exception("hint listener failed")

    def submit(self, job_id: str) -> None:
        try:
            publish(self.app, job_id)
        except Exception as exc:  # noqa: BLE001 - the job is committed; a worker's sweeper republishes it
            log.warning("could not publish job %s (%s); a worker will pick it up once the broker is back",
                        job_id, exc)

    def cancel(self, job_id: str) -> None:
        """The flag is committed; the worker polls it between minibatches, wherever it runs."""

    def healthy(self) -> bool:
        with self._health_lock:
            checked, ok = self._health
            if time.monotonic() - checked < HEALTH_CACHE_SECONDS:
                return ok
            try:
                with self.app.connection_for_write() as conn:
                    conn.ensure_connection(max_retries=1, timeout=2)
                ok = True
            except Exception:  # noqa: BLE001
                ok = False
            self._health = (time.monotonic(), ok)
            return ok

    def worker_pids(self) -> None:
        """None: Celery workers run anywhere; the job rows' ``worker`` column is the only record of them."""
        return None


def _redact(url: str | None) -> str:
    if not url or "@" not in url:
        return str(url)
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


# -- worker side: one runtime per pool process ----------------------------------------------------------------
_RUNTIME = None
_RUNTIME_PID = None


def _runtime(app: Celery) -> "_TaskRuntime":
    global _RUNTIME, _RUNTIME_PID
    if _RUNTIME is None or _RUNTIME_PID != os.getpid():
        _RUNTIME = _TaskRuntime(app)
        _RUNTIME_PID = os.getpid()
    return _RUNTIME


class CeleryWorker(Worker):
    """The embedded Worker fed by Celery tasks: cancel and loss of the job come from the database, no pipe."""

    def _drain(self) -> None:
        pass

    def _parent_alive(self) -> bool:
        return True

    def _database_lost(self, job_id: str, attempt: int, exc: Exception) -> None:
        # Not the job's fault: leave it running without a heartbeat; once the database is back a sweeper sees
        # the expired lease and another attempt resumes from the last checkpoint.
        log.warning("job %s: attempt %d lost the database (%s: %s); it will be taken over", job_id, attempt,
                    type(exc).__name__, exc)


class _TaskRuntime:
    """A pool process's trainer: a CeleryWorker, fed by Celery tasks instead of a pipe."""

    def __init__(self, app: Celery):
        self.app = app
        self.worker = CeleryWorker(app.mlp_settings, conn=None, parent_pid=os.getppid())
        self.running = False

    def run(self, job_id: str) -> str:
        w = self.worker
        if w.shutdown:  # the worker is stopping: leave the job to another one
            publish(self.app, job_id)
            return "handed over"
        with w.Session() as session:
            taken = jobs_service.claim_fairest(session, job_id=job_id, worker=w.name,
                                               lease_seconds=w.settings.lease_seconds)
        if taken is None:
            log.info("job %s: not claimable (done, cancelled, or held by a live worker) and no other job is "
                     "queued; task dropped", job_id)
            return "skipped"
        if taken[0] != job_id:
            log.info("task for job %s trains job %s, the fairest queued one (its own message takes the next)",
                     job_id, taken[0])
        if threading.current_thread() is threading.main_thread():
            _install_pool_process_handler()
        while True:
            job_id, attempt = taken
            if not self._train(job_id, attempt):
                return "handed over"
            # Still warm: take the fairest queued job now rather than after Celery's acknowledgement and next
            # delivery (7-16 ms a job on two cores). The message of a job taken here wakes a worker later for
            # whatever is queued then (nothing: a no-op claim).
            if w.shutdown:
                return "ran"
            with w.Session() as session:
                taken = jobs_service.claim_next(session, worker=w.name)
            if taken is None:
                return "ran"

    def _train(self, job_id: str, attempt: int) -> bool:
        """Train one claimed job under a lease heartbeat and hint its end; False when it was handed back to the
        queue because the worker is stopping."""
        w = self.worker
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, attempt, stop), daemon=True,
                                name=f"lease-{job_id[:8]}")
        beat.start()
        self.running = True
        try:
            w.run_job(job_id, attempt)
        finally:
            self.running = False
            stop.set()
            beat.join(timeout=5)
        if w.shutdown:  # stopped at a minibatch and requeued by run_job: wake another worker for it
            publish(self.app, job_id)
            log.info("job %s: handed back to the queue at shutdown; resumes from its checkpoint", job_id)
            return False
        broadcast_hint(self.app, "ended", job_id)  # e.g. the sweep driver starts the next trial without its poll
        return True

    def _heartbeat(self, job_id: str, attempt: int, stop: threading.Event) -> None:
        while not stop.wait(self.worker.settings.lease_heartbeat_seconds):
            try:
                with self.worker.Session() as session:
                    if not jobs_service.renew(session, job_id=job_id, attempt=attempt):
                        return  # finished or fenced out; the trainer notices on its next poll
            except Exception as exc:  # noqa: BLE001 - a database blip: try again next beat
                log.warning("job %s: lease renewal failed: %s", job_id, exc)


# -- graceful stop: SIGTERM to the worker hands running jobs back at the next minibatch ------------------------
_PREVIOUS_SIGTERM = None


def _pool_process_sigterm(signum, frame) -> None:
    """In a pool process: stop the running job at its next minibatch (requeued); when idle, what it did before."""
    if _RUNTIME is not None and _RUNTIME_PID == os.getpid() and _RUNTIME.running:
        _RUNTIME.worker.shutdown = True
        return
    if callable(_PREVIOUS_SIGTERM):
        _PREVIOUS_SIGTERM(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_pool_process_handler() -> None:
    """Called in the pool process's main thread when a job starts (billiard resets handlers after fork)."""
    global _PREVIOUS_SIGTERM
    current = signal.getsignal(signal.SIGTERM)
    if current is not _pool_process_sigterm:
        _PREVIOUS_SIGTERM = current
        signal.signal(signal.SIGTERM, _pool_process_sigterm)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _on_warm_shutdown(how: str = "", **_kw) -> None:
    """Celery's warm shutdown waits for running tasks; tell them to hand their jobs back instead."""
    if how != "Warm":
        return
    for pid in _children(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


# -- worker main process: the sweeper ---------------------------------------------------------------------------
class Sweeper:
    """Recovers jobs of dead workers (expired lease) and jobs whose message was lost; runs in every worker."""

    def __init__(self, app: Celery):
        self.app = app
        self.settings = app.mlp_settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlp-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.sweep_seconds):
            try:
                self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - database or broker down: try again next round
                log.warning("sweep failed: %s", exc)

    def _broker_queue_empty(self) -> bool:
        with self.app.connection_for_read() as conn:
            try:
                return conn.default_channel.queue_declare(QUEUE, passive=True).message_count == 0
            except ChannelError:  # Redis drops the list of an empty queue: "no queue"
                return True

    def sweep_once(self) -> None:
        # A fresh engine per sweep, disposed after it: no pooled connection is inherited by forked pool processes.
        engine = make_engine(self.settings)
        try:
            with make_sessionmaker(engine)() as session:
                expired = jobs_service.requeue_expired(session, lease_seconds=self.settings.lease_seconds)
                for job_id in expired:
                    log.warning("job %s: its worker stopped renewing the lease; requeued", job_id)
                    publish(self.app, job_id)
                lost = (jobs_service.stale_queued(session, older_than=self.settings.republish_seconds)
                        if self._broker_queue_empty() else [])
                for job_id in lost:
                    log.warning("job %s: queued with no message in the broker; republished", job_id)
                    publish(self.app, job_id)
        finally:
            engine.dispose()


def run_worker(settings, *, concurrency: int | None = None, loglevel: str = "info") -> int:
    """``mlp-service worker``: a Celery worker with ``concurrency`` training processes and a sweeper.

    The caller (the CLI) has already run ``prepare_worker_process``: it must happen before numpy loads.
    """
    n = max(1, concurrency or settings.workers or 1)
    app = make_celery(settings)
    sweeper = Sweeper(app)

    def _ready(**_kw):
        sweeper.start()

    def _down(**_kw):
        sweeper.stop()

    signals.worker_ready.connect(_ready, weak=False)
    signals.worker_shutdown.connect(_down, weak=False)
    signals.worker_shutting_down.connect(_on_warm_shutdown, weak=False)
    app.worker_main(["worker", f"--concurrency={n}", "--pool=prefork", f"--loglevel={loglevel.upper()}",
                     f"--hostname=mlp-{os.getpid()}@{socket.gethostname()}", "-Q", QUEUE,
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])
    return 0
