"""The Optuna side of a sweep: distributions of the search space, seeded samplers, pruners, and the in-memory
study rebuilt from the trial rows (so the database is the only state, and proposals depend only on it)."""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from service.errors import InvalidInput
from service.sweeps.schemas import FloatRange, IntRange, SweepCreate
from service.sweeps.tables import COMPLETE, PENDING, PRUNED, TRIAL_RUNNING

optuna.logging.set_verbosity(logging.WARNING)

# Searched dimensions in the order they are suggested (``units`` expands to units_1.. unless shared).
DIMENSIONS = ("hidden_layers", "units", "activation", "dropout", "optimizer", "learning_rate", "batch_size",
              "weight_decay", "epochs", "l1", "clip_norm")     # new ones last: a seed proposes what it did
GRID_MAX_POINTS = 10_000


def _distribution(dim: Any) -> BaseDistribution | None:
    """Optuna's distribution of one dimension, or None for a fixed value."""
    if isinstance(dim, IntRange):
        return IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    if isinstance(dim, FloatRange):
        return FloatDistribution(dim.low, dim.top(), log=dim.log, step=dim.step)
    if isinstance(dim, list):
        return CategoricalDistribution(list(dict.fromkeys(dim)))
    return None


def shared_units(req: SweepCreate) -> bool:
    """One ``units`` for every hidden layer (always for the grid, whose space cannot be conditional)."""
    return req.space.shared_units or req.strategy == "grid"


def _names(req: SweepCreate, n_layers: int) -> list[str]:
    out = []
    for name in DIMENSIONS:
        if name == "units" and not shared_units(req):
            out += [f"units_{i}" for i in range(1, n_layers + 1)]
        else:
            out.append(name)
    return out


def _dimension(req: SweepCreate, name: str) -> Any:
    return getattr(req.space, "units" if name.startswith("units") else name)


def suggest(req: SweepCreate, trial: optuna.Trial) -> dict[str, Any]:
    """Every parameter of a new trial: asked from Optuna for searched dimensions, fixed values as given."""
    params: dict[str, Any] = {}
    for name in _names(req, n_layers=0 if not shared_units(req) else 1):
        params[name] = _suggest(trial, name, _dimension(req, name))
    if not shared_units(req):
        for i in range(1, int(params["hidden_layers"]) + 1):
            params[f"units_{i}"] = _suggest(trial, f"units_{i}", req.space.units)
    return params


def _suggest(trial: optuna.Trial, name: str, dim: Any) -> Any:
    dist = _distribution(dim)
    if dist is None:
        return dim
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution) and dist.step is not None:  # written as the grid writes it (0.3, not
        value = trial.suggest_float(name, dist.low, dist.high, step=dist.step)  # 0.30000000000000004)
        return dim.value(round((value - dim.low) / dim.step))
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)


def distributions(req: SweepCreate, params: dict[str, Any]) -> dict[str, BaseDistribution]:
    """The distributions of a stored trial's searched parameters (for re-adding it to a study)."""
    out = {}
    for name in params:
        dist = _distribution(_dimension(req, name))
        if dist is not None:
            out[name] = dist
    return out


def grid_space(req: SweepCreate) -> dict[str, list]:
    """The grid of a ``grid`` sweep: every searched dimension as its list of values (a 422 names a float range
    without a step or a log range; the grid's size is checked before any list is made)."""
    dims: dict[str, Any] = {}
    for name in _names(req, 1):
        dim = _dimension(req, name)
        if isinstance(dim, (IntRange, FloatRange)) and dim.log:
            raise InvalidInput(f"space.{name}: the grid strategy needs a list of values, not a log range")
        if isinstance(dim, FloatRange) and dim.step is None:
            raise InvalidInput(f"space.{name}: the grid strategy needs a list of values (or a range with a step), "
                               "not a float range")
        if isinstance(dim, (IntRange, FloatRange, list)):
            dims[name] = dim
    size = math.prod(_grid_count(dim) for dim in dims.values())
    if size > GRID_MAX_POINTS:
        raise InvalidInput(f"space: the grid has {size:,} points, more than {GRID_MAX_POINTS:,}; search this space "
                           "with the random or tpe strategy and a max_trials")
    return {name: _grid_values(dim) for name, dim in dims.items()}


def _grid_count(dim: Any) -> int:
    if isinstance(dim, IntRange):
        return (dim.high - dim.low) // dim.step + 1
    if isinstance(dim, FloatRange):
        return dim.count()
    return len(dict.fromkeys(dim))


def _grid_values(dim: Any) -> list:
    if isinstance(dim, IntRange):
        return list(range(dim.low, dim.high + 1, dim.step))
    if isinstance(dim, FloatRange):
        return [dim.value(i) for i in range(dim.count())]
    return list(dict.fromkeys(dim))


def grid_size(req: SweepCreate) -> int:
    """Number of points of the grid."""
    return math.prod(len(values) for values in grid_space(req).values())


def trial_seed(seed: int, number: int, attempt: int = 0) -> int:
    """The sampler seed of trial ``number``: depends on the sweep's seed and the trial number only (and on the
    attempt, for a proposal asked again because it repeated an earlier trial's parameters)."""
    entropy = [seed, number] if attempt == 0 else [seed, number, attempt]  # attempt 0: the seeds of old versions
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def sampler(req: SweepCreate, number: int, attempt: int = 0) -> optuna.samplers.BaseSampler:
    """The seeded sampler that proposes trial ``number``."""
    if req.strategy == "grid":
        return optuna.samplers.GridSampler(grid_space(req), seed=req.seed)
    if req.strategy == "random":
        return optuna.samplers.RandomSampler(seed=trial_seed(req.seed, number, attempt))
    return optuna.samplers.TPESampler(seed=trial_seed(req.seed, number, attempt))


PROPOSAL_ATTEMPTS = 10


def params_key(params: Mapping[str, Any]) -> str:
    """One string per distinct parameter set (what makes two trials the same training: same job, same seed)."""
    return json.dumps(params, sort_keys=True, default=str)


def propose(req: SweepCreate, key: str, trials: list, *, number: int) -> dict[str, Any]:
    """The parameters of trial ``number``, from the stored trials and the seed only (so the same after a restart).

    A random or TPE proposal equal to an earlier trial's parameters would train the same job again to the same
    result (a job's seed is the sweep's): it is asked again with the next attempt's seed, up to
    PROPOSAL_ATTEMPTS times (in a small space nearly every point of which was tried, the repeat is kept). The grid
    never repeats a point."""
    history = [] if req.strategy == "random" else trials  # a random proposal depends on its seed alone
    seen = {params_key(t.params) for t in trials} if req.strategy != "grid" else set()
    for attempt in range(PROPOSAL_ATTEMPTS):
        params = suggest(req, study(req, key, history, number=number, attempt=attempt).ask())
        if params_key(params) not in seen:
            return params
    # Every attempt repeated a trial: in a finite space of at most GRID_MAX_POINTS points, one of those not tried
    # yet, drawn with the next seed (so a small space is covered without repeats, whatever the draws were).
    untried = [p for p in space_points(req) or [] if params_key(p) not in seen]
    if untried:
        rng = np.random.default_rng(trial_seed(req.seed, number, PROPOSAL_ATTEMPTS))
        return untried[int(rng.integers(len(untried)))]
    return params


def space_points(req: SweepCreate) -> list[dict[str, Any]] | None:
    """Every parameter set of a finite space of at most GRID_MAX_POINTS points, as ``suggest`` gives them (units
    per layer unless shared); None for an infinite or larger space."""
    size = space_size(req)
    if size is None or size > GRID_MAX_POINTS:
        return None
    values = {name: _grid_values(dim) if isinstance(dim, (IntRange, FloatRange, list)) else [dim]
              for name in DIMENSIONS for dim in [getattr(req.space, name)]}
    others = [name for name in DIMENSIONS if name != "units"]
    points = []
    for combo in itertools.product(*(values[name] for name in others)):
        base = dict(zip(others, combo))
        if shared_units(req):
            points += [{**base, "units": u} for u in values["units"]]
        else:
            points += [{**base, **{f"units_{i}": u for i, u in enumerate(us, 1)}}
                       for us in itertools.product(values["units"], repeat=int(base["hidden_layers"]))]
    return points


def space_size(req: SweepCreate) -> int | None:
    """How many distinct parameter sets the space holds, or None when it is infinite (a float range without a
    step). ``units`` counts once per hidden layer unless shared (sum over the ``hidden_layers`` values)."""
    counts = {}
    for name in DIMENSIONS:
        dim = getattr(req.space, name)
        if isinstance(dim, FloatRange) and dim.step is None:
            return None
        counts[name] = _grid_count(dim) if isinstance(dim, (IntRange, FloatRange, list)) else 1
    rest = math.prod(n for name, n in counts.items() if name not in ("units", "hidden_layers"))
    if shared_units(req):
        return rest * counts["units"] * counts["hidden_layers"]
    layers = req.space.hidden_layers
    depths = (range(layers.low, layers.high + 1, layers.step) if isinstance(layers, IntRange)
              else dict.fromkeys(layers) if isinstance(layers, list) else [layers])
    return rest * sum(counts["units"] ** int(h) for h in depths)


def pruner(req: SweepCreate, max_epochs: int) -> optuna.pruners.BasePruner:
    """Optuna's pruner named by the request."""
    if req.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=req.pruner_startup_trials,
                                           n_warmup_steps=req.pruner_warmup_epochs)
    if req.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs))
    return optuna.pruners.NopPruner()


def max_epochs(req: SweepCreate) -> int:
    """The most epochs any trial can have."""
    dim = req.space.epochs
    return dim.high if isinstance(dim, IntRange) else max(dim) if isinstance(dim, list) else int(dim)


_STATES = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, PENDING: TrialState.RUNNING,
           TRIAL_RUNNING: TrialState.RUNNING}


def study_name(req: SweepCreate) -> str:
    """The name of every Optuna study of a sweep: a function of the request's seed only, never of the sweep's
    (random) id. Optuna's Hyperband puts trial n in the bracket ``crc32(f"{study_name}_{n}")`` picks, so a name
    from the id gave two identical requests different brackets, hence different prune decisions and rankings."""
    return f"mlp-sweep-seed-{req.seed}"


def study(req: SweepCreate, key: str, trials: list, *, number: int,
          running: Mapping[int, int] | None = None, attempt: int = 0) -> optuna.Study:
    """An in-memory study holding the stored trials in number order, with the sampler of trial ``number``.

    ``key`` is the sweep's id (what the caches of this module are kept by); the study is named ``study_name(req)``.
    ``running`` maps the trials being judged now to the first epoch being judged: they count as running,
    whatever their row says, and the pruner's memory of them covers only the epochs before that one.
    """
    running = running or {}
    st = optuna.create_study(study_name=study_name(req), direction=req.direction, sampler=sampler(req, number, attempt),
                             pruner=pruner(req, max_epochs(req)))
    ordered = sorted(trials, key=lambda t: t.number)
    memory = _pruner_memory(req, ordered, running)
    for t in ordered:
        state = TrialState.RUNNING if t.number in running else _STATES.get(t.status, TrialState.FAIL)
        if state == TrialState.COMPLETE and t.value is None:
            state = TrialState.FAIL
        dists = distributions(req, t.params)
        st.add_trial(create_trial(
            state=state, value=t.value if state == TrialState.COMPLETE else None,
            params={k: v for k, v in t.params.items() if k in dists}, distributions=dists,
            intermediate_values=_values(t), system_attrs=memory.get(t.number, {})))
    return st


def _values(t) -> dict[int, float]:
    return {int(k): float(v) for k, v in (t.intermediate or {}).items()}


def _pruner_memory(req: SweepCreate, ordered: list, running: Mapping[int, int]) -> dict[int, dict[str, Any]]:
    """What the pruner wrote into each trial's system attributes while it judged the trial epoch by epoch.

    Hyperband's successive halving remembers there the value a trial had at each rung it reached, and judges
    a trial against those of its bracket. A rebuilt study gets them back with Optuna's public API only: every
    stored trial's per-epoch values are replayed through the same pruner (``prune`` once per epoch, as the
    driver calls it) in a scratch study of the same name (a trial's bracket depends on the study's name and the
    trial's number); the decisions of the replay are ignored. The median rule remembers nothing: no replay.
    """
    if req.pruner != "hyperband" or not ordered:
        return {}
    out: dict[int, dict[str, Any]] = {}
    scratch = None
    for t in ordered:
        upto = running.get(t.number)
        values = {e: v for e, v in sorted(_values(t).items()) if upto is None or e < upto}
        if not values:
            continue
        # A trial's memory depends on its own values and bracket only (not on the other trials): kept.
        key = (study_name(req), req.direction, max_epochs(req), t.number, tuple(values.items()))
        if key not in _MEMORY:
            if scratch is None:
                scratch = optuna.create_study(study_name=study_name(req), direction=req.direction,
                                              pruner=pruner(req, max_epochs(req)))
                for _ in range(ordered[-1].number + 1):
                    scratch.add_trial(create_trial(state=TrialState.RUNNING))
            seen: dict[int, float] = {}
            for epoch, value in values.items():
                seen[epoch] = value
                _judge(scratch, t.number, seen)
            _MEMORY[key] = dict(scratch.get_trials(deepcopy=False)[t.number].system_attrs)
            while len(_MEMORY) > _MEMORY_KEPT:
                _MEMORY.pop(next(iter(_MEMORY)))
        out[t.number] = dict(_MEMORY[key])
    return out


_MEMORY: dict[tuple, dict[str, Any]] = {}  # (study, direction, max epochs, trial number, values) -> its memory
_MEMORY_KEPT = 20_000


def _judge(st: optuna.Study, number: int, intermediate: dict[int, float]) -> bool:
    """Optuna's pruner on trial ``number`` of ``st`` as it stands, with ``intermediate`` as its values."""
    frozen = copy.deepcopy(st.get_trials(deepcopy=False)[number])  # the pruner's memory of it so far
    frozen.intermediate_values = dict(intermediate)
    return bool(st.pruner.prune(st, frozen))


_JUDGES: dict[str, tuple[tuple, optuna.Study]] = {}  # sweep id -> (what the study was built from, the study)
_JUDGES_KEPT = 16


def judging_study(req: SweepCreate, key: str, trials: list, *, running: Mapping[int, int]) -> optuna.Study:
    """The study that judges the ``running`` trials' new epochs: ``study(...)``, built again only when what the
    pruner reads has changed. The median rule reads the trials that are not running (their states, values and
    per-epoch values) and remembers nothing, so its study is kept between the driver's rounds (a rebuild costs
    tens of milliseconds a round); Hyperband's replays its memory, so it gets a fresh study every time.

    Optuna's median rule (``PercentilePruner.prune``) reads the study's COMPLETE trials and the judged trial's
    own values only, so the kept study is rebuilt only when the complete trials that are not being judged
    change (a trial completed), not when one is pruned, fails, is cancelled or is asked; a trial asked since
    the build gets a RUNNING placeholder at its index (``should_prune`` replaces its values with the judged
    ones). A judged trial is never COMPLETE in the study: one that was at the build changes the key.
    """
    if req.pruner != "median":
        return study(req, key, trials, number=len(trials), running=running)
    key = tuple((t.number, t.value, tuple(sorted((t.intermediate or {}).items()))) for t in trials
                if t.status == COMPLETE and t.value is not None and t.number not in running)
    kept = _JUDGES.pop(key, None)
    if kept is None or kept[0] != key:
        kept = (key, study(req, key, trials, number=len(trials), running=running))
    for _ in range(len(kept[1].get_trials(deepcopy=False)), max(running, default=-1) + 1):
        kept[1].add_trial(create_trial(state=TrialState.RUNNING))
    _JUDGES[key] = kept  # most recently used last
    while len(_JUDGES) > _JUDGES_KEPT:
        _JUDGES.pop(next(iter(_JUDGES)))
    return kept[1]


def should_prune(st: optuna.Study, number: int, intermediate: dict[int, float]) -> bool:
    """Whether Optuna's pruner stops trial ``number`` given its values up to the latest epoch in ``intermediate``."""
    return _judge(st, number, intermediate)


def warm_up() -> None:
    """Import what the importances need (scikit-learn's forests, seconds on a busy machine) ahead of their use."""
    try:
        import optuna.importance  # noqa: F401
        import sklearn.ensemble  # noqa: F401
    except ImportError:  # Optuna then says what is missing when importances are asked for
        pass


def importances(st: optuna.Study) -> dict[str, float] | None:
    """Optuna's parameter importances over the complete trials (None with fewer than two, or nothing searched)."""
    done = [t for t in st.trials if t.state == TrialState.COMPLETE]
    if len(done) < 2 or not any(t.params for t in done):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "some regimes have less than 2 trials": expected early on
            return {k: round(float(v), 6) for k, v in optuna.importance.get_param_importances(st).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
