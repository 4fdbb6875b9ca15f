"""An accumulating GEMM, ``C += alpha * op(A) @ B``, from the BLAS numpy already loaded.

numpy's ``matmul``/``dot`` always call ``gemm`` with ``beta = 0``: OpenBLAS then
clears the output in a separate pass before the multiply, and a plain SGD step
``W -= x.T @ delta`` needs a scratch gradient plus one more pass over ``W`` to
subtract it. ``cblas_sgemm`` with ``beta = 1`` does the whole step in one call,
writing ``W`` once. For the first layer of a 784-256 network that is ~15 % less
time per weight update (see ``bench/core_train.py``).

numpy exposes no such call, so this module finds the OpenBLAS library numpy
ships (its ``numpy.libs`` / ``.dylibs`` folder) and calls it through ``ctypes``
from the standard library. Only 64-bit-integer (ILP64) OpenBLAS builds with
the symbol names numpy's wheels use are accepted, and a self-test against
``numpy.dot`` runs before first use. When any of that fails (numpy built
against MKL or Accelerate, an unknown symbol name, a mismatch), ``available()``
is False and callers keep to plain numpy: results are then equal up to
floating-point rounding, never different in kind.

Set ``CORE_FUSED_GEMM=0`` in the environment to switch the fast path off.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# Symbol names of ILP64 cblas gemm in numpy's wheels: numpy >= 2.0
# (scipy-openblas) and numpy 1.2x (openblas64_).
_SYMBOLS = {
    np.dtype(np.float32): ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),
    np.dtype(np.float64): ("scipy_cblas_dgemm64_", "cblas_dgemm64_"),
}
_CTYPES = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}

_state: dict = {}


def _library_paths() -> list[str]:
    base = os.path.dirname(np.__file__)
    pats = [os.path.join(base + ".libs", "*openblas*"), os.path.join(base, ".dylibs", "*openblas*")]
    return sorted(p for pat in pats for p in glob.glob(pat))


def _load() -> dict:
    """Resolve the gemm functions once; an empty dict means "not available"."""
    if os.environ.get("CORE_FUSED_GEMM", "1").strip().lower() in ("0", "false", "no", "off"):
        return {}
    funcs: dict = {}
    for path in _library_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for dtype, names in _SYMBOLS.items():
            for name in names:
                fn = getattr(lib, name, None)
                if fn is None:
                    continue
                real, i64, ptr = _CTYPES[dtype], ctypes.c_int64, ctypes.c_void_p
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64,
                               real, ptr, i64, ptr, i64, real, ptr, i64]
                fn.restype = None
                funcs[dtype] = fn
                break
        if funcs:
            break
    return {dtype: fn for dtype, fn in funcs.items() if _self_test(fn, dtype)}


def _self_test(fn, dtype) -> bool:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5)).astype(dtype)
    b = rng.standard_normal((7, 3)).astype(dtype)
    c = rng.standard_normal((5, 3)).astype(dtype)
    want = c - 0.5 * (a.T @ b)
    got = c.copy()
    fn(_ROW_MAJOR, _TRANS, _NO_TRANS, 5, 3, 7, -0.5, a.ctypes.data, 5, b.ctypes.data, 3,
       1.0, got.ctypes.data, 3)
    return bool(np.allclose(got, want, rtol=1e-4, atol=1e-5))


def available(dtype=np.float32) -> bool:
    """Whether ``gemm_tn_acc`` can be used for arrays of ``dtype``."""
    if "funcs" not in _state:
        _state["funcs"] = _load()
    return np.dtype(dtype) in _state["funcs"]


def gemm_tn_acc(a: np.ndarray, b: np.ndarray, c: np.ndarray, alpha: float) -> bool:
    """``c += alpha * a.T @ b`` in one BLAS call, if possible.

    Parameters
    ----------
    a : ndarray of shape (k, m), C-contiguous
    b : ndarray of shape (k, n), C-contiguous
    c : ndarray of shape (m, n), C-contiguous and writeable; updated in place
    alpha : float

    Returns True when done; False (and ``c`` untouched) when the arrays or the
    platform do not allow it, so the caller must do it with numpy instead.
    """
    dtype = c.dtype
    if not available(dtype):
        return False
    k, m = a.shape
    if (b.shape[0] != k or c.shape != (m, b.shape[1]) or a.dtype != dtype or b.dtype != dtype
            or not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous)
            or not c.flags.writeable or k == 0):
        return False
    n = b.shape[1]
    _state["funcs"][dtype](_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, alpha,
                           a.ctypes.data, m, b.ctypes.data, n, 1.0, c.ctypes.data, n)
    return True
