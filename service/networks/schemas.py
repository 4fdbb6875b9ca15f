"""Request and response schemas of /v1/networks; the Literal choices come from the engine's own tables."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from core import ACTIVATIONS, INITS, LAYERS, LOSSES

ActivationName = Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]
InitName = Literal[tuple(INITS)]  # type: ignore[valid-type]
LossName = Literal[tuple(LOSSES)]  # type: ignore[valid-type]

WINE_EXAMPLE = {
    "name": "wine-mlp",
    "input_dim": 13,
    "layers": [
        {"type": "dense", "units": 32, "activation": "relu"},
        {"type": "dropout", "rate": 0.1},
        {"type": "dense", "units": 3, "activation": "softmax"},
    ],
    "loss": "cross_entropy",
}
BINARY_EXAMPLE = {
    "name": "moons-binary",
    "layers": [
        {"type": "dense", "units": 16, "activation": "tanh"},
        {"type": "dense", "units": 1, "activation": "sigmoid"},
    ],
    "loss": "binary_cross_entropy",
}
REGRESSION_EXAMPLE = {
    "name": "diabetes-regressor",
    "input_dim": 10,
    "layers": [
        {"type": "dense", "units": 64, "activation": "relu", "init": next(iter(INITS))},
        {"type": "dense", "units": 1},
    ],
    "loss": "mse",
}


# A fully connected layer: `units` outputs followed by `activation`.
class DenseLayer(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"type": "dense", "units": 32, "activation": "relu"}]})

    type: Literal["dense"] = Field(description="Layer type: dense (fully connected).")
    units: int = Field(ge=1, description="Number of output units.")
    activation: ActivationName = Field("linear", description="Activation applied to the layer's output.")
    init: InitName | None = Field(None, description="Weight initialisation; default depends on the activation.")
    max_norm: float | None = Field(None, gt=0, description="After each step, each unit's incoming weights are "
                                                           "rescaled to at most this L2 norm (Keras' MaxNorm).")


# A standalone activation (the same functions as a dense layer's `activation`).
class ActivationLayer(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"type": "activation", "name": "tanh"}]})

    type: Literal["activation"] = Field(description="Layer type: a stand-alone activation.")
    name: ActivationName = Field(description="The activation function.")


# Dropout: zeroes a fraction `rate` of its inputs while training; identity at prediction.
class DropoutLayer(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"type": "dropout", "rate": 0.1}]})

    type: Literal["dropout"] = Field(description="Layer type: dropout (identity at prediction).")
    rate: float = Field(ge=0.0, lt=1.0, description="Fraction of inputs dropped while training, in [0, 1).")


# Batch normalisation: batch statistics while training, running statistics (saved with the model) at prediction.
class BatchNormLayer(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"type": "batch_norm"}]})

    type: Literal["batch_norm"] = Field(description="Layer type: batch normalisation over the features.")
    momentum: float = Field(0.1, gt=0.0, le=1.0, description="Weight of each batch in the running statistics "
                                                             "(PyTorch's convention), in (0, 1].")
    eps: float = Field(1e-5, gt=0.0, description="Added to the variance.")


# One schema per engine layer type, with the same fields: the discriminator's choices are core.LAYERS' keys.
_LAYER_SCHEMAS = {"dense": DenseLayer, "activation": ActivationLayer, "dropout": DropoutLayer,
                  "batch_norm": BatchNormLayer}
if set(_LAYER_SCHEMAS) != set(LAYERS) or any(
        set(_LAYER_SCHEMAS[k].model_fields) != {"type", *LAYERS[k].fields} for k in LAYERS):
    raise RuntimeError(f"layer schemas {sorted(_LAYER_SCHEMAS)} do not match core.LAYERS {sorted(LAYERS)} "
                       "(types and fields)")
Layer = Annotated[Union[tuple(_LAYER_SCHEMAS[k] for k in LAYERS)],  # noqa: UP007
                  Field(discriminator="type")]


# Body of POST /v1/networks: the architecture, validated by the engine (core.Network.from_spec).
class NetworkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [WINE_EXAMPLE, BINARY_EXAMPLE, REGRESSION_EXAMPLE]})

    name: str = Field("network", min_length=1, max_length=200, description="A label for people; not unique.")
    input_dim: int | None = Field(None, ge=1, description="Number of input features; when given it must match "
                                                           "the data set. Omit to take it from the data set.")
    layers: list[Layer] = Field(min_length=1, description="Layers from input to output; the last dense layer's "
                                                           "units are the output width.")
    loss: LossName = Field(description="cross_entropy needs a softmax output (>= 2 units), binary_cross_entropy "
                                       "a sigmoid output with 1 unit, mse/mae/huber a non-softmax output.")
    huber_delta: float | None = Field(None, gt=0, description="huber only: where the loss turns from quadratic "
                                                              "to linear (default 1.0).")

    def to_spec(self) -> dict:
        """The spec dict handed to core (defaults filled in, unset optional fields dropped)."""
        spec = self.model_dump(exclude_none=True)
        spec["layers"] = [layer.model_dump(exclude_none=True) for layer in self.layers]
        return spec


NETWORK_READ_EXAMPLE = {"id": "3f0c9a1e8b7d4c2a9e6f5d4c3b2a1908", **WINE_EXAMPLE, "output_dim": 3, "n_params": 547,
                        "task": "classification", "created_at": "2026-01-01T12:00:00Z"}


# A stored network: the normalised spec plus what the engine derived from it.
class NetworkRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [NETWORK_READ_EXAMPLE]})

    id: str = Field(description="The network's id.")
    name: str = Field(description="The label given at creation.")
    input_dim: int | None = Field(description="Input features, if fixed; else set by the first training data set.")
    layers: list[Layer] = Field(description="The layers, with defaults filled in.")
    loss: LossName = Field(description="The training loss.")
    huber_delta: float | None = Field(None, description="huber's delta, when set.")
    output_dim: int = Field(description="Units of the last dense layer (classes for cross_entropy).")
    n_params: int | None = Field(description="Trainable parameters; null until input_dim is known.")
    task: Literal["classification", "regression"] = Field(description="classification or regression (from the loss).")
    created_at: datetime = Field(description="When it was created (UTC).")

    @classmethod
    def from_row(cls, row) -> "NetworkRead":
        """Build from a networks table row."""
        return cls(id=row.id, name=row.name, input_dim=row.input_dim, layers=row.spec["layers"],
                   loss=row.spec["loss"], huber_delta=row.spec.get("huber_delta"), output_dim=row.output_dim, n_params=row.n_params, task=row.task,
                   created_at=row.created_at)


# One page of networks, newest first.
class NetworkList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [NETWORK_READ_EXAMPLE], "total": 1}]})

    items: list[NetworkRead] = Field(description="One page of networks, newest first.")
    total: int = Field(description="Networks over all pages.")
