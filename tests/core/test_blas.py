"""core._blas: the accumulating GEMM that plain SGD steps use, and the rule
that core imports only numpy and the standard library."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import _blas

CORE = Path(__file__).resolve().parents[2] / "core"


def _numpy_ships_ilp64_openblas() -> bool:
    info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return "openblas" in info.get("name", "") and "USE64BITINT" in info.get("openblas configuration", "")


def test_fast_path_is_found_on_numpys_own_openblas_wheels():
    # numpy's PyPI wheels for Linux (what .ci/run and the Dockerfile install)
    # ship an ILP64 OpenBLAS; there the fast path must be active, or the
    # training benchmark silently loses its fused SGD step.
    for dtype in (np.float32, np.float64):
        for kind in ("gemm", "axpby", "axpy"):
            assert _blas.available(dtype, kind) == _numpy_ships_ilp64_openblas(), (dtype, kind)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_tn_acc_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((33, 70)).astype(dtype)
    b = rng.standard_normal((33, 17)).astype(dtype)
    c = rng.standard_normal((70, 17)).astype(dtype)
    want = c - 0.25 * (a.T @ b)
    done = _blas.gemm_tn_acc(a, b, c, -0.25)
    assert done == _blas.available(dtype)
    if done:
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(c, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpby_and_axpy_match_numpy(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 7)).astype(dtype)
    y = rng.standard_normal((40, 7)).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    want = 0.1 * x + 0.9 * y
    assert _blas.axpby(0.1, x, 0.9, y) == _blas.available(dtype, "axpby")
    if _blas.available(dtype, "axpby"):
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    want = y - 0.5 * x
    assert _blas.axpy(-0.5, x, y) == _blas.available(dtype, "axpy")
    if _blas.available(dtype, "axpy"):
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol)


def test_axpby_and_axpy_refuse_arrays_they_cannot_take():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.standard_normal((6, 4)).astype(np.float32)
    before = y.copy()
    for args in [(x.T, y), (x[:, :3], y[:, :3]), (x.astype(np.float64), y), (x[:5], y)]:
        assert not _blas.axpby(1.0, args[0], 1.0, args[1])
        assert not _blas.axpy(1.0, args[0], args[1])
    ro = y.copy()
    ro.flags.writeable = False
    assert not _blas.axpy(1.0, x, ro) and not _blas.axpby(1.0, x, 1.0, ro)
    assert np.array_equal(y, before)


def test_gemm_tn_acc_refuses_arrays_it_cannot_take_and_leaves_c_alone():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 6)).astype(np.float32)
    b = rng.standard_normal((8, 4)).astype(np.float32)
    c = rng.standard_normal((6, 4)).astype(np.float32)
    before = c.copy()
    assert not _blas.gemm_tn_acc(np.asfortranarray(a), b, c, -1.0)        # not C-contiguous
    assert not _blas.gemm_tn_acc(a, b[:, :3], c, -1.0)                      # shapes disagree
    assert not _blas.gemm_tn_acc(a.astype(np.float64), b, c, -1.0)          # dtypes disagree
    ro = c.copy()
    ro.flags.writeable = False
    assert not _blas.gemm_tn_acc(a, b, ro, -1.0)                            # read-only output
    assert np.array_equal(c, before)


def test_fast_path_can_be_switched_off_from_the_environment():
    code = "import numpy as np; from core import _blas; print(_blas.available(np.float32))"
    env = {**os.environ, "CORE_FUSED_GEMM": "0", "PYTHONPATH": str(CORE.parent)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_core_imports_only_numpy_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def _blas_threads_after(code: str, env_threads: str | None = None) -> int:
    """Run ``code`` in a fresh interpreter (numpy loaded with no thread limit) and read OpenBLAS's pool size."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(CORE.parent)
    if env_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = env_threads
    code += ("\nfrom threadpoolctl import threadpool_info"
             "\nprint([i['num_threads'] for i in threadpool_info() if i['internal_api'] == 'openblas'][0])")
    return int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout.strip())


def test_set_threads_limits_openblas_after_numpy_loaded():
    if not _numpy_ships_ilp64_openblas():
        assert not _blas.set_threads(1) and _blas.get_threads() is None
        return
    assert _blas_threads_after("import numpy; from core import _blas; assert _blas.set_threads(1)") == 1
    assert _blas_threads_after("import numpy; from core import _blas; _blas.set_threads(1); "
                               "assert _blas.get_threads() == 1") == 1
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        _blas.set_threads(0)

