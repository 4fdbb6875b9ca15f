"""mlp-service's NumPy neural-network engine.

>>> from core import Network, fit
>>> net = Network.from_spec({"layers": [{"type": "dense", "units": 3, "activation": "softmax"}],
...                          "loss": "cross_entropy"})
"""
from .activations import ACTIVATIONS
from .cross_validation import cross_validate, fold_indices
from .early_stopping import MONITORS, monitors_for
from .initializers import INITS
from .layers import LAYERS, ActivationLayer, Dense, Dropout, Layer
from .losses import LOSSES
from .network import Network, count_params, normalize_spec
from .optimizers import OPTIMIZERS
from .preprocessing import ENCODERS, IMPUTERS, SCALERS, Preprocessor
from .training import (VAL_AUC_MAX_ROWS, History, TrainingCancelled, TrainingDiverged, TrainingState, fit,
                       validation_indices)

__all__ = [
    "ACTIVATIONS", "INITS", "LAYERS", "LOSSES", "MONITORS", "OPTIMIZERS", "monitors_for",
    "Network", "fit", "count_params", "normalize_spec", "History", "TrainingState", "TrainingDiverged",
    "TrainingCancelled", "Layer", "Dense", "ActivationLayer", "Dropout", "Preprocessor", "IMPUTERS",
    "SCALERS", "ENCODERS", "cross_validate", "fold_indices", "validation_indices", "VAL_AUC_MAX_ROWS",
]
