"""mlp-service: a REST service that trains multilayer perceptrons on the project's NumPy engine."""

__version__ = "0.1.0"
