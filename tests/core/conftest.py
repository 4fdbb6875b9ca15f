"""Shared fixtures for the engine tests.

The engine tests run NumPy's BLAS on one thread. Their matrices are small, so a
second thread buys little, and on a busy machine (several test runs or
training workers at once on 2 cores) OpenBLAS's spinning threads make each
fit 5-10x slower. Results do not depend on this: every test asserts only
thresholds, or equality between runs made under the same setting.
"""
from __future__ import annotations

import pytest

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # threadpoolctl comes with scikit-learn (test extra); run unlimited without it
    threadpool_limits = None


@pytest.fixture(scope="module", autouse=True)
def _single_blas_thread():
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
