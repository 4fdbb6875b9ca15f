"""How a trial becomes a network and a job: the one place both the driver and the space checks build them."""

from __future__ import annotations

from typing import Any

import core
from service.jobs.schemas import JobCreate
from service.sweeps.schemas import SweepCreate
from service.sweeps.tables import SweepTrial


def job_body(req: SweepCreate, t: SweepTrial) -> JobCreate:
    """The training job of a trial."""
    p = t.params
    fixed = req.training.model_dump(exclude_unset=True) if req.training is not None else {}
    clip = p.get("clip_norm")                   # trials stored before l1/clip_norm were dimensions lack them
    return JobCreate(network_id=t.network_id, dataset_id=req.dataset_id,
                     validation_dataset_id=req.validation_dataset_id,
                     validation_split=req.validation_split or 0.0, epochs=int(p["epochs"]),
                     batch_size=int(p["batch_size"]), weight_decay=float(p["weight_decay"]),
                     l1=float(p.get("l1", 0.0)), clip_norm=None if clip is None else float(clip),
                     optimizer={"type": p["optimizer"], "learning_rate": float(p["learning_rate"])},
                     seed=req.seed, **fixed, **_standardize(req, fixed))


def _standardize(req: SweepCreate, fixed: dict) -> dict:
    """``standardize`` as the request gave it; left out beside a ``training.preprocessing`` that says the scaling
    itself (a sweep's default true would contradict its ``scale: none``)."""
    return {} if "preprocessing" in fixed and "standardize" not in req.model_fields_set else \
        {"standardize": req.standardize}


def network_spec(req: SweepCreate, params: dict[str, Any], dataset, *, name: str) -> dict:
    """The network of a trial: its hidden layers (dropout after each when > 0) and the data set's output."""
    layers: list[dict] = []
    for i in range(1, int(params["hidden_layers"]) + 1):
        units = params["units"] if "units" in params else params[f"units_{i}"]
        layers.append({"type": "dense", "units": int(units), "activation": params["activation"]})
        if float(params["dropout"]) > 0:
            layers.append({"type": "dropout", "rate": float(params["dropout"])})
    if dataset.task == "classification":
        loss = core.LOSSES["cross_entropy"]
        layers.append({"type": "dense", "units": loss.output_units(len(dataset.classes or [])),
                       "activation": "softmax"})
        return {"name": name, "layers": layers, "loss": "cross_entropy"}
    layers.append({"type": "dense", "units": int(dataset.n_outputs), "activation": "linear"})
    return {"name": name, "layers": layers, "loss": "mse"}
