"""Central-difference gradient checks in float64, shared by the engine's gradient tests."""
from __future__ import annotations

import numpy as np

EPS = 1e-6  # the step h of (f(x+h) - f(x-h)) / 2h
TOL = 1e-6  # the largest relative error accepted


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """``|a - n| / (|a| + |n|)`` with norms over all entries (0 when both are 0)."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``x`` (perturbed in place)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + EPS
        fp = f()
        x[i] = old - EPS
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * EPS)
    return g


def assert_gradient(analytic: np.ndarray, f, x: np.ndarray) -> None:
    """``analytic`` has the shape of ``x`` and matches the central differences of ``f()`` with respect to ``x``."""
    assert analytic.shape == x.shape
    assert rel_error(analytic, numeric_grad(f, x)) < TOL
