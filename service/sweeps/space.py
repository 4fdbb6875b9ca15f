"""Checks of a sweep's search space at creation: a dimension whose values can only make trials that fail is a 422
naming ``space.<dimension>`` and, for a limit, the limit and its setting.

The rules are not repeated here: each bound of a dimension is put into an otherwise harmless trial (one hidden
layer of one unit, no dropout, one epoch of batches of one row, the job's default learning rate) and that trial's
network and job go through the networks' and jobs' own validation (``NetworkCreate``, ``networks.check_limits``
with the data set's input width, ``JobCreate``, ``jobs.check_limits``). A value that fails there fails every
trial that draws it. Values that fail only together (many layers of many units over ``MLP_MAX_PARAMS``) are
not refused: those trials fail with the reason, and the others run.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError

from service.errors import InvalidInput, validation_message
from service.jobs import preprocessing as job_preprocessing
from service.jobs import service as jobs_service
from service.jobs.schemas import DEFAULTS as JOB_DEFAULTS
from service.networks import service as networks_service
from service.networks.schemas import NetworkCreate
from service.settings import Settings
from service.sweeps.schemas import FloatRange, IntRange, SweepCreate
from service.sweeps.trials import job_body, network_spec

MAX_STEPS = 10**9  # values of a float range with a step (Optuna's step arithmetic fails far beyond: 1e-30 of 0.3)

# The trial each bound is tried in: every other dimension at a value that passes every limit.
HARMLESS: dict[str, Any] = {"hidden_layers": 1, "units": 1, "activation": "relu", "dropout": 0.0,
                            "optimizer": "adam", "learning_rate": JOB_DEFAULTS["optimizer"]["learning_rate"],
                            "batch_size": 1, "weight_decay": 0.0, "epochs": 1, "l1": 0.0, "clip_norm": None}


def check(settings: Settings, body: SweepCreate, dataset) -> None:
    """InvalidInput (422) for an empty list of choices, a range whose step is wider than the range, or a bound
    that no trial could train with; ``dataset`` is the training data set's row (its input width and output)."""
    for name in HARMLESS:
        dim = getattr(body.space, name)
        if isinstance(dim, list) and not dim:
            raise InvalidInput(f"space.{name}: a list of choices needs at least one value")
        if (isinstance(dim, (IntRange, FloatRange)) and dim.step is not None and dim.high > dim.low
                and dim.step > dim.high - dim.low and (isinstance(dim, FloatRange) or dim.step > 1)):
            raise InvalidInput(f"space.{name}: step {dim.step:g} is wider than the range {dim.low:g}..{dim.high:g}, "
                               f"which then holds only {dim.low:g}; give a smaller step or the fixed value")
        if isinstance(dim, FloatRange) and dim.step is not None and dim.count() > MAX_STEPS:
            raise InvalidInput(f"space.{name}: step {dim.step:g} makes about {float(dim.count()):.2g} values of "
                               f"{dim.low:g}..{dim.high:g}, more than {MAX_STEPS:,}; give a larger step, or none "
                               "(any value of the range)")
    width = _input_width(dataset)
    harmless = _harmless(body)
    for name in HARMLESS:
        for value in bounds(getattr(body.space, name)):
            try:
                _check_trial(settings, body, {**harmless, name: value}, dataset, width)
            except InvalidInput as exc:
                raise InvalidInput(f"space.{name}: {value!r} fails every trial that draws it ({exc.detail})") from None


def check_training(body: SweepCreate, dataset, n_val: int) -> None:
    """InvalidInput (422) naming ``training.<field>`` for fixed job options no trial could train with, through the
    jobs' own checks (the options' combination with a trial's fields, class weights and the sample-weight column
    against the data set, the monitors of early stopping and of a plateau schedule against the validation rows)."""
    if body.training is None:
        return
    params = {**_harmless(body), "epochs": max(bounds(body.space.epochs))}  # (a rule may tie an option to epochs)
    try:
        job = job_body(body, SimpleNamespace(params=params, network_id="training-check"))
    except ValidationError as exc:
        raise InvalidInput(f"training: {validation_message(exc.errors(include_url=False))}") from None
    try:
        jobs_service.check_weights(job, dataset)
        if job.early_stopping is not None:
            jobs_service.check_monitor(job.early_stopping.monitor, dataset, n_val,
                                       field="training.early_stopping.monitor")
        if job.lr_schedule is not None and getattr(job.lr_schedule, "monitor", None) is not None:
            jobs_service.check_monitor(job.lr_schedule.monitor, dataset, n_val, field="training.lr_schedule.monitor")
    except InvalidInput as exc:
        detail = exc.detail
        raise InvalidInput(detail if detail.startswith("training.") else f"training.{detail}") from None


def _harmless(body: SweepCreate) -> dict[str, Any]:
    """HARMLESS with the space's highest learning rate: the fixed training options' rule that ties an option to it
    (``lr_schedule.min_lr <= learning_rate``) is an upper bound on it, so a value the space holds passes it if any
    does; each bound of the space is then tried with the options by ``check``, which names the space's value
    that fails with them."""
    top = max(bounds(body.space.learning_rate))
    optimizer = body.space.optimizer[0] if isinstance(body.space.optimizer, list) and body.space.optimizer \
        else body.space.optimizer
    # a top rate of 0 fails alone: it is then named as space.learning_rate, not blamed on the first dimension
    return {**HARMLESS, "learning_rate": top if top > 0 else HARMLESS["learning_rate"],
            "optimizer": optimizer if isinstance(optimizer, str) else HARMLESS["optimizer"]}


def bounds(dim: Any) -> list:
    """The extreme values a dimension can give a trial (every rule checked is a lower or an upper bound)."""
    if isinstance(dim, IntRange):
        return list(dict.fromkeys([dim.low, dim.low + (dim.high - dim.low) // dim.step * dim.step]))
    if isinstance(dim, FloatRange):
        return list(dict.fromkeys([dim.low, dim.top()]))
    if isinstance(dim, list):
        if all(isinstance(v, (int, float)) for v in dim):
            return list(dict.fromkeys([min(dim), max(dim)]))
        return list(dict.fromkeys(dim))
    return [dim]


def _input_width(dataset) -> int:
    try:
        return job_preprocessing.input_width(dataset)
    except (TypeError, ValueError, KeyError):  # an older row without a column profile
        return int(dataset.n_features)


def _check_trial(settings: Settings, body: SweepCreate, params: dict[str, Any], dataset, width: int) -> None:
    """The network's and the job's validation of a trial with these parameters (InvalidInput naming the field)."""
    spec = network_spec(body, params, dataset, name="space check")
    try:
        network = NetworkCreate(**spec)
        job = job_body(body, SimpleNamespace(params=params, network_id="space-check"))
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc.errors(include_url=False))) from None
    networks_service.check_limits(network.to_spec(), input_dim=width, settings=settings)
    jobs_service.check_limits(settings, job)
