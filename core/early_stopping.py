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


_BOTH = ("classification", "regression")
_CLS = ("classification",)
_REG = ("regression",)
MONITORS: dict[str, Monitor] = {
    "train_loss": Monitor(False, _BOTH, False),
    "val_loss": Monitor(False, _BOTH, True),
    "train_accuracy": Monitor(True, _CLS, False),
    "val_accuracy": Monitor(True, _CLS, True),
    "train_mae": Monitor(False, _REG, False),
    "val_mae": Monitor(False, _REG, True),
    "val_rmse": Monitor(False, _REG, True),
    "val_r2": Monitor(True, _REG, True),
}


def monitors_for(task: str) -> list[str]:
    """Names of the metrics early stopping may watch for a task, in table order.

    Parameters
    ----------
    task : str
        ``"classification"`` or ``"regression"``.

    Returns
    -------
    list of str
    """
    return [name for name, m in MONITORS.items() if task in m.tasks]


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
