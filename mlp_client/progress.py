"""The live progress displays: ``Job.wait``'s (a rich bar on a terminal, one line per epoch elsewhere) and
``Sweep.wait``'s (a rich bar of finished trials)."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

MONITOR_FALLBACK = ("val_accuracy", "val_loss", "val_r2", "val_rmse", "val_mae", "train_accuracy")


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class EtaEstimator:
    """Time left from a smoothed epoch rate, counted down between epochs (so it does not jump).

    Each epoch's duration (the ``seconds`` the server reports, else the time between events) updates an
    exponential moving average; the estimate is ``remaining_epochs * average`` less the time spent in the
    current epoch so far. Intra-epoch progress (a fraction of the job) refines ``remaining_epochs``.
    """

    def __init__(self, epochs: int, alpha: float = 0.3, clock=time.monotonic):
        self.epochs = max(int(epochs), 1)
        self.alpha = alpha
        self.clock = clock
        self.rate: float | None = None       # smoothed seconds per epoch
        self.done = 0.0                      # epochs completed (fractional with batch progress)
        self.mark = clock()                  # when ``done`` was last set by an epoch event
        self.last_epoch_at: float | None = None
        self.finished = False

    def epoch(self, epoch: int, seconds: float | None = None) -> None:
        now = self.clock()
        took = seconds
        if took is None and self.last_epoch_at is not None and epoch > self.done:
            took = (now - self.last_epoch_at) / max(epoch - int(self.done), 1)
        if took is not None and took > 0:
            self.rate = took if self.rate is None else self.alpha * took + (1 - self.alpha) * self.rate
        self.done = float(epoch)
        self.last_epoch_at = self.mark = now

    def fraction(self, fraction: float) -> None:
        done = fraction * self.epochs
        if done > self.done:
            self.done = done
            self.mark = self.clock()

    def remaining(self) -> float | None:
        if self.finished:
            return 0.0
        if self.rate is None:
            return None
        left = (self.epochs - self.done) * self.rate - (self.clock() - self.mark)
        return max(left, 0.0)


def start_live(progress) -> None:
    """``progress.start()`` of a rich Progress, safe against Ctrl-C: rich hides the cursor early in ``start``, so a
    KeyboardInterrupt arriving before ``start`` returns (and before any ``with``/``finally`` that would stop it)
    left the terminal without a cursor. The cursor is shown again and the interrupt goes on."""
    try:
        progress.start()
    except BaseException:
        try:
            progress.stop()
        except Exception:  # noqa: BLE001 - a half-started Live may not stop cleanly; the cursor is what matters
            pass
        progress.console.show_cursor(True)
        raise


class SweepBar:
    """The bar of ``Sweep.wait`` / ``AsyncSweep.wait``: finished trials of ``max_trials``, the best value, the time.

    Started when made (``disabled``: draws nothing); ``close()`` stops it and shows the cursor again.
    """

    def __init__(self, sweep: dict[str, Any], *, disabled: bool = False, file: IO[str] | None = None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("sweep {task.fields[sid]}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("best {task.fields[best]}"), TimeElapsedColumn(),
                             console=Console(file=file or sys.stderr), disable=disabled)
        self._task = self._bar.add_task("sweep", total=sweep.get("max_trials"), sid=sweep["id"][:8], best="-")
        start_live(self._bar)  # the cursor comes back however Ctrl-C interrupts the wait (also inside start)

    def update(self, sweep: dict[str, Any]) -> None:
        """Draw the sweep as last read (its ``counts`` and ``best_value``)."""
        counts = sweep.get("counts") or {}
        done = sum(n for k, n in counts.items() if k not in ("pending", "running"))
        best = sweep.get("best_value")
        self._bar.update(self._task, completed=done, best="-" if best is None else f"{best:.4g}")

    def close(self) -> None:
        self._bar.stop()


class ProgressDisplay:
    """Shows a job's progress from its events; ``rich`` draws the bar when the output is a terminal."""

    def __init__(self, job_id: str, epochs: int, monitor: str | None = None, *, file: IO[str] | None = None,
                 force_terminal: bool | None = None):
        self.job_id = job_id
        self.epochs = max(int(epochs), 1)
        self.monitor = monitor
        self.file = file or sys.stderr
        self.eta = EtaEstimator(self.epochs)
        self.metrics: dict[str, Any] = {}
        self.status = "queued"
        self.batch: tuple[int, int] | None = None
        self._progress = None
        self._task = None
        self._lines = False
        try:
            from rich.console import Console
        except ImportError:
            self._lines = True
            return
        self.console = Console(file=self.file, force_terminal=force_terminal)
        if not (self.console.is_terminal or self.console.is_jupyter):
            self._lines = True
            return
        self._start_rich()

    # -- rich ----------------------------------------------------------------------------------------------
    def _start_rich(self) -> None:
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        display = self

        class _Eta(ProgressColumn):
            max_refresh = 0.5

            def render(self, task) -> Text:
                return Text(f"ETA {_fmt_seconds(display.eta.remaining())}", style="progress.remaining")

        self._progress = Progress(
            TextColumn("[bold]{task.fields[status]}"), BarColumn(),
            TextColumn("{task.fields[where]}"), TextColumn("{task.fields[numbers]}"), _Eta(),
            console=self.console, refresh_per_second=4, transient=False)
        self._task = self._progress.add_task("train", total=self.epochs, status=self.status,
                                             where=self._where(), numbers="")
        start_live(self._progress)

    def _where(self) -> str:
        done = int(self.eta.done)
        text = f"epoch {done}/{self.epochs}"
        if self.batch is not None:
            text += f" batch {self.batch[0]}/{self.batch[1]}"
        return text

    def _numbers(self) -> str:
        m = self.metrics
        parts = []
        if m.get("train_loss") is not None:
            parts.append(f"loss {m['train_loss']:.4f}")
        key = self.monitor if self.monitor and m.get(self.monitor) is not None else next(
            (k for k in MONITOR_FALLBACK if m.get(k) is not None), None)
        if key is not None and key != "train_loss":
            parts.append(f"{key} {m[key]:.4f}")
        return "  ".join(parts)

    def _update(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=min(self.eta.done, self.epochs), status=self.status,
                                  where=self._where(), numbers=self._numbers())

    # -- events --------------------------------------------------------------------------------------------
    def on_event(self, event: str, data: dict[str, Any]) -> None:
        """One event of the job's stream (``epoch``, ``progress`` or ``end``; others are ignored)."""
        handler = {"epoch": self.on_epoch, "progress": self.on_progress, "end": self.on_end}.get(event)
        if handler is not None:
            handler(data)

    def on_epoch(self, metrics: dict[str, Any]) -> None:
        self.status = "running"
        self.metrics = metrics
        self.batch = None
        self.eta.epoch(int(metrics.get("epoch", self.eta.done + 1)), metrics.get("seconds"))
        if self._lines:
            print(f"job {self.job_id} {self._where()}  {self._numbers()}  eta {_fmt_seconds(self.eta.remaining())}",
                  file=self.file, flush=True)
        self._update()

    def on_progress(self, data: dict[str, Any]) -> None:
        """An intra-epoch report: ``fraction`` of the job and/or ``batch``/``batches`` of the epoch."""
        self.status = "running"
        if data.get("batch") is not None and data.get("batches"):
            self.batch = (int(data["batch"]), int(data["batches"]))
        if data.get("fraction") is not None:
            self.eta.fraction(float(data["fraction"]))
        elif self.batch is not None and data.get("epoch") is not None:
            self.eta.fraction((int(data["epoch"]) - 1 + self.batch[0] / self.batch[1]) / self.epochs)
        self._update()

    def on_end(self, job: dict[str, Any]) -> None:
        self.status = job.get("status", "ended")
        self.eta.finished = True
        if job.get("metrics"):
            self.metrics = job["metrics"]
        if self.status == "succeeded":
            progress = job.get("progress") or {}
            self.eta.done = float(progress.get("epoch") or self.epochs)   # fewer with early stopping
            self.batch = None
        self._update()
        if self._progress is not None:
            if self.status == "succeeded":   # early stopping ends the job before the planned epochs
                self._progress.update(self._task, total=max(self.eta.done, 1), completed=max(self.eta.done, 1))
            self._progress.refresh()
        if self._lines:
            tail = f"  model {job['model_id']}" if job.get("model_id") else ""
            err = f"  error: {job['error']}" if job.get("error") and self.status != "succeeded" else ""
            print(f"job {self.job_id} {self.status} after {self._where()}  {self._numbers()}{tail}{err}",
                  file=self.file, flush=True)

    def on_status(self, status: str) -> None:
        self.status = status
        self._update()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
