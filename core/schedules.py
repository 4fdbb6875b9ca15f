"""Learning-rate schedules, keyed by the names the API accepts (``lr_schedule.type``).

A schedule gives the learning rate of each epoch (1-based) from the
optimizer's base ``learning_rate``; ``fit`` sets it on the optimizer before
the epoch and writes it into the epoch's metrics as ``lr``. The epoch-indexed
schedules (``step``, ``exponential``, ``cosine``) are pure functions of the
epoch, with an optional linear warm-up (``warmup_epochs``: epoch ``e <= w``
runs at ``base * e / (w + 1)``; the schedule then starts at epoch ``w + 1``
as if it were its first). ``reduce_on_plateau`` (Keras' ``ReduceLROnPlateau``)
watches a metric and keeps its bookkeeping in ``state()``, which checkpoints
store so a resumed run continues exactly.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

from ._spec import int_field
from .early_stopping import MONITORS, monitors_for


def _num(value, field: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite number within the given bounds, else ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a number, got {value!r}")
    bad = (low is not None and (value < low or (low_open and value == low))) or \
          (high is not None and (value > high or (high_open and value == high)))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{field} must be {' and '.join(s for s in (lo, hi) if s)}, got {value!r}")
    return float(value)


class Schedule(ABC):
    """Base class: the learning rate of each epoch.

    Parameters
    ----------
    base_lr : float
        The optimizer's ``learning_rate``.
    epochs : int
        The run's planned epochs (``cosine``'s default period).
    **options
        The schedule's own options (``defaults``), validated by ``normalize``.
    """

    type = ""
    defaults: dict = {}
    warmup = True  # whether ``warmup_epochs`` applies

    def __init__(self, base_lr: float, epochs: int, **options):
        self.base_lr = float(base_lr)
        self.epochs = int(epochs)
        self.options = {**self.defaults, **options}
        self.warmup_epochs = int(self.options.get("warmup_epochs", 0) or 0)

    @classmethod
    def normalize(cls, options: dict, where: str = "lr_schedule") -> dict:
        """Validate the options (without ``type``) and fill in defaults.

        Parameters
        ----------
        options : dict
        where : str
            Prefix of error messages.

        Returns
        -------
        dict

        Raises
        ------
        ValueError
            Naming the option and the value.
        """
        allowed = set(cls.defaults) | ({"warmup_epochs"} if cls.warmup else set())
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"{where}.{sorted(unknown)[0]}: unknown option for {cls.type!r}; "
                             f"allowed: {', '.join(sorted(allowed))}")
        out = {**cls.defaults, **options}
        if cls.warmup:
            out["warmup_epochs"] = int_field(out.get("warmup_epochs", 0), f"{where}.warmup_epochs", 0)
        return cls._check(out, where)

    @classmethod
    def _check(cls, options: dict, where: str) -> dict:
        return options

    def lr(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1-based), warm-up included.

        Parameters
        ----------
        epoch : int

        Returns
        -------
        float
        """
        w = self.warmup_epochs
        if epoch <= w:
            return self.base_lr * epoch / (w + 1)
        return self._lr(epoch - w)

    @abstractmethod
    def _lr(self, k: int) -> float:
        """The learning rate of the schedule's ``k``-th epoch after warm-up (1-based)."""

    def update(self, epoch: int, metrics: dict) -> None:
        """Record an epoch's metrics (only ``reduce_on_plateau`` uses them).

        Parameters
        ----------
        epoch : int
        metrics : dict
        """

    def state(self) -> dict:
        """JSON-able bookkeeping for a checkpoint (none for epoch-indexed schedules).

        Returns
        -------
        dict
        """
        return {}

    def load(self, state: dict) -> None:
        """Continue from ``state()`` output.

        Parameters
        ----------
        state : dict
        """


class StepDecay(Schedule):
    """``lr = base * gamma ** ((k - 1) // step_size)`` (PyTorch's ``StepLR``)."""

    type = "step"
    defaults = {"step_size": 10, "gamma": 0.1}

    @classmethod
    def _check(cls, o, where):
        o["step_size"] = int_field(o["step_size"], f"{where}.step_size")
        o["gamma"] = _num(o["gamma"], f"{where}.gamma", low=0, high=1, low_open=True)
        return o

    def _lr(self, k):
        return self.base_lr * self.options["gamma"] ** ((k - 1) // self.options["step_size"])


class ExponentialDecay(Schedule):
    """``lr = base * gamma ** (k - 1)`` (PyTorch's ``ExponentialLR``)."""

    type = "exponential"
    defaults = {"gamma": 0.95}

    @classmethod
    def _check(cls, o, where):
        o["gamma"] = _num(o["gamma"], f"{where}.gamma", low=0, high=1, low_open=True)
        return o

    def _lr(self, k):
        return self.base_lr * self.options["gamma"] ** (k - 1)


class CosineDecay(Schedule):
    """Cosine annealing from ``base`` to ``min_lr`` over ``t_max`` epochs (default: the
    epochs after warm-up), ``min_lr + (base - min_lr) (1 + cos(pi (k - 1) / t_max)) / 2``,
    as PyTorch's ``CosineAnnealingLR``; ``min_lr`` after ``t_max``."""

    type = "cosine"
    defaults = {"t_max": None, "min_lr": 0.0}

    @classmethod
    def _check(cls, o, where):
        if o["t_max"] is not None:
            o["t_max"] = int_field(o["t_max"], f"{where}.t_max")
        o["min_lr"] = _num(o["min_lr"], f"{where}.min_lr", low=0)
        return o

    def _lr(self, k):
        t_max = self.options["t_max"] or max(1, self.epochs - self.warmup_epochs)
        lo = min(self.options["min_lr"], self.base_lr)
        if k > t_max:
            return lo
        return lo + (self.base_lr - lo) * (1 + math.cos(math.pi * (k - 1) / t_max)) / 2


class ReduceOnPlateau(Schedule):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved (by more
    than ``min_delta``) for ``patience`` epochs, never below ``min_lr`` (Keras'
    ``ReduceLROnPlateau``; its wait restarts after each reduction)."""

    type = "reduce_on_plateau"
    warmup = False
    defaults = {"monitor": "val_loss", "factor": 0.1, "patience": 10, "min_lr": 0.0, "min_delta": 0.0}

    def __init__(self, base_lr, epochs, **options):
        super().__init__(base_lr, epochs, **options)
        self.current = self.base_lr
        self.best: float | None = None
        self.wait = 0

    @classmethod
    def _check(cls, o, where):
        if o["monitor"] not in MONITORS:
            raise ValueError(f"{where}.monitor must be one of {', '.join(MONITORS)}, got {o['monitor']!r}")
        o["factor"] = _num(o["factor"], f"{where}.factor", low=0, high=1, low_open=True, high_open=True)
        o["patience"] = int_field(o["patience"], f"{where}.patience")
        o["min_lr"] = _num(o["min_lr"], f"{where}.min_lr", low=0)
        o["min_delta"] = _num(o["min_delta"], f"{where}.min_delta", low=0)
        return o

    def _lr(self, k):
        return self.current

    def update(self, epoch, metrics):
        value = metrics[self.options["monitor"]]
        maximize = MONITORS[self.options["monitor"]].maximize
        delta = self.options["min_delta"]
        if self.best is None or (value > self.best + delta if maximize else value < self.best - delta):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.options["patience"]:
            self.current = max(self.current * self.options["factor"], self.options["min_lr"])
            self.wait = 0

    def state(self):
        return {"current": self.current, "best": self.best, "wait": self.wait}

    def load(self, state):
        self.current = float(state.get("current", self.base_lr))
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))


SCHEDULES: dict[str, type[Schedule]] = {
    cls.type: cls for cls in (StepDecay, ExponentialDecay, CosineDecay, ReduceOnPlateau)}


def make_schedule(spec: dict | None, base_lr: float, epochs: int, *, task: str,
                  has_val: bool) -> Schedule | None:
    """Build ``fit``'s ``lr_schedule`` option.

    Parameters
    ----------
    spec : dict or None
        ``{"type": <a key of SCHEDULES>, **options}``; None: a constant learning rate.
    base_lr : float
        The optimizer's learning rate.
    epochs : int
        The run's planned epochs.
    task : str
        ``"classification"`` or ``"regression"`` (which metrics a plateau may watch).
    has_val : bool
        Whether training has validation rows.

    Returns
    -------
    Schedule or None

    Raises
    ------
    ValueError
        Naming the option and the value (``lr_schedule.gamma must be ...``).
    """
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"lr_schedule must be a dict like {{'type': 'cosine'}} or None, got {spec!r}")
    kind = spec.get("type")
    if kind not in SCHEDULES:
        raise ValueError(f"lr_schedule.type must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    cls = SCHEDULES[kind]
    options = cls.normalize({k: v for k, v in spec.items() if k != "type"})
    monitor = options.get("monitor")
    if monitor is not None:
        if monitor not in monitors_for(task):
            raise ValueError(f"lr_schedule.monitor must be one of {', '.join(monitors_for(task))}, "
                             f"got {monitor!r}")
        if MONITORS[monitor].needs_validation and not has_val:
            raise ValueError(f"lr_schedule.monitor {monitor!r} needs validation data "
                             "(validation or validation_split)")
    return cls(base_lr, epochs, **options)
