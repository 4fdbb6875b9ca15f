"""Early stopping: the metrics it may watch (``MONITORS``) and its tracker.

The keys of ``MONITORS`` are the metric names ``fit`` writes into each epoch's
history and the strings the API accepts for ``early_stopping.monitor``.
"""
from __future__ import annotations

from typing import NamedTuple


class Monitor(NamedTuple):
    """A metric early stopping may watch."""

    maximize: bool  # larger is better (accuracy, R²); else smaller (losses, errors)
    tasks: tuple[str, ...]  # the tasks whose history has the metric
    needs_validation: bool  # computed on the validation rows
    binary_only: bool = False  # only for two classes (and at most training.VAL_AUC_MAX_ROWS validation rows)


_BOTH = ("classification", "regression")
_CLS = ("classification",)
_REG = ("regression",)
MONITORS: dict[str, Monitor] = {
    "train_loss": Monitor(False, _BOTH, False),
    "val_loss": Monitor(False, _BOTH, True),
    "train_accuracy": Monitor(True, _CLS, False),
    "val_accuracy": Monitor(True, _CLS, True),
    "val_auc": Monitor(True, _CLS, True, binary_only=True),
    "train_mae": Monitor(False, _REG, False),
    "val_mae": Monitor(False, _REG, True),
    "val_rmse": Monitor(False, _REG, True),
    "val_r2": Monitor(True, _REG, True),
}


def monitors_for(task: str, n_classes: int | None = None) -> list[str]:
    """Names of the metrics early stopping may watch for a task, in table order.

    Parameters
    ----------
    task : str
        ``"classification"`` or ``"regression"``.
    n_classes : int or None
        For classification: leaves out the binary-only monitors (``val_auc``) unless 2; None keeps them.

    Returns
    -------
    list of str
    """
    return [name for name, m in MONITORS.items()
            if task in m.tasks and not (m.binary_only and n_classes not in (None, 2))]


def normalize_early_stopping(early_stopping, has_val: bool, task: str) -> dict | None:
    """Validate ``fit``'s ``early_stopping`` option and fill in its defaults.

    Parameters
    ----------
    early_stopping : dict, None or False
        None or False: off. A dict, even ``{}``: on, with defaults for what it
        leaves out (``monitor`` val_loss, ``patience`` 5, ``min_delta`` 0,
        ``restore_best`` True), as the service's ``{"early_stopping": {}}`` does.
    has_val : bool
        Whether training has validation rows.
    task : str
        ``"classification"`` or ``"regression"``.

    Returns
    -------
    dict or None
        The full options, or None when early stopping is off.

    Raises
    ------
    ValueError
        Naming the option and the value.
    """
    if early_stopping is None or early_stopping is False:
        return None
    if not isinstance(early_stopping, dict):
        raise ValueError(f"early_stopping must be a dict like {{'monitor': 'val_loss', "
                         f"'patience': 5}} or None, got {early_stopping!r}")
    cfg = {"monitor": "val_loss", "patience": 5, "min_delta": 0.0, "restore_best": True}
    unknown = set(early_stopping) - set(cfg)
    if unknown:
        raise ValueError(f"early_stopping.{sorted(unknown)[0]}: unknown option")
    cfg.update(early_stopping)
    allowed = monitors_for(task)
    if cfg["monitor"] not in allowed:
        raise ValueError(f"early_stopping.monitor must be one of {', '.join(allowed)}, "
                         f"got {cfg['monitor']!r}")
    if MONITORS[cfg["monitor"]].needs_validation and not has_val:
        raise ValueError(f"early_stopping.monitor {cfg['monitor']!r} needs validation data "
                         "(validation or validation_split)")
    if isinstance(cfg["patience"], bool) or not isinstance(cfg["patience"], int) or cfg["patience"] < 1:
        raise ValueError(f"early_stopping.patience must be an integer >= 1, got {cfg['patience']!r}")
    if not isinstance(cfg["min_delta"], (int, float)) or cfg["min_delta"] < 0:
        raise ValueError(f"early_stopping.min_delta must be >= 0, got {cfg['min_delta']!r}")
    return cfg


class EarlyStopping:
    """Follows the monitored metric epoch by epoch: the best epoch so far, and when to stop.

    Parameters
    ----------
    options : dict or None
        As ``normalize_early_stopping`` returns them. None: early stopping is
        off; the tracker then only finds the best epoch (of ``val_loss`` with
        validation data, else ``train_loss``) and never stops or keeps weights.
    has_val : bool
        Whether training has validation rows (chooses the monitor when off).
    """

    def __init__(self, options: dict | None, has_val: bool):
        self.enabled = options is not None
        off = {"monitor": "val_loss" if has_val else "train_loss", "patience": None,
               "min_delta": 0.0, "restore_best": False}
        opts = options or off
        self.monitor: str = opts["monitor"]
        self.patience: int | None = opts["patience"]
        self.min_delta: float = opts["min_delta"]
        self.restore_best: bool = opts["restore_best"]
        self.maximize = MONITORS[self.monitor].maximize
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_arrays: dict | None = None

    @classmethod
    def from_options(cls, early_stopping, *, has_val: bool, task: str) -> "EarlyStopping":
        """A tracker for ``fit``'s ``early_stopping`` option.

        Takes the arguments of `normalize_early_stopping` and raises its
        ValueError (naming the option and the value) for an invalid option.

        Returns
        -------
        EarlyStopping

        See Also
        --------
        normalize_early_stopping
        """
        return cls(normalize_early_stopping(early_stopping, has_val, task), has_val)

    def update(self, epoch: int, metrics: dict, arrays) -> bool:
        """Record one epoch's metrics.

        Parameters
        ----------
        epoch : int
            The epoch just finished (1-based).
        metrics : dict
            Its metrics; must hold the monitored one.
        arrays : callable() -> dict of str to ndarray
            The network's arrays (``Network.get_arrays``), copied when this
            epoch is the best and the best weights are to be restored.

        Returns
        -------
        bool
            True when the metric has not improved by more than ``min_delta``
            for ``patience`` epochs: training should stop.
        """
        value = metrics[self.monitor]
        best = self.best_value
        if best is None or (value > best + self.min_delta if self.maximize
                            else value < best - self.min_delta):
            self.best_value, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_arrays = {k: v.copy() for k, v in arrays().items()}
            return False
        self.wait += 1
        return self.patience is not None and self.wait >= self.patience

    def state(self) -> dict:
        """The bookkeeping a checkpoint stores (JSON-able).

        Returns
        -------
        dict
            ``{"best_value": float or None, "best_epoch": int or None, "wait": int}``.
        """
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "wait": self.wait}

    def load(self, state: dict, best_arrays: dict | None) -> None:
        """Continue from a checkpoint's ``state()`` and best weights.

        Parameters
        ----------
        state : dict
            As ``state()`` returned it.
        best_arrays : dict of str to ndarray, or None
            The best epoch's network arrays, if they were kept.
        """
        self.best_value = state.get("best_value")
        self.best_epoch = state.get("best_epoch")
        self.wait = state.get("wait", 0)
        self.best_arrays = best_arrays

    def restore(self, set_arrays) -> None:
        """Put the best epoch's weights back, when they were kept.

        Parameters
        ----------
        set_arrays : callable(dict of str to ndarray)
            ``Network.set_arrays`` of the trained network.
        """
        if self.restore_best and self.best_arrays is not None:
            set_arrays(self.best_arrays)
