"""A few BLAS calls numpy does not expose, from the OpenBLAS numpy already loaded.

* ``gemm_tn_acc``: ``C += alpha * A.T @ B``. numpy's ``matmul``/``dot`` always
  call ``gemm`` with ``beta = 0``: OpenBLAS then clears the output in a separate
  pass before the multiply, and a plain SGD step ``W -= x.T @ delta`` needs a
  scratch gradient plus one more pass over ``W`` to subtract it. With
  ``beta = 1`` the whole step is one call that writes ``W`` once.
* ``axpby`` (``y = alpha * x + beta * y``) and ``axpy`` (``y += alpha * x``):
  one pass each where numpy needs two or three (``y *= beta; y += alpha * x``).
  Adam's moment updates and its final step use them.
* ``set_threads``: OpenBLAS's thread count, at run time. Environment variables
  (``OPENBLAS_NUM_THREADS``) only count before numpy loads; a process that
  inherits numpy already loaded (a worker spawned from a script that imported
  it) has to set it here.

This module finds the OpenBLAS library numpy ships (its ``numpy.libs`` /
``.dylibs`` folder) and calls it through ``ctypes`` from the standard library.
Only 64-bit-integer (ILP64) OpenBLAS builds with the symbol names numpy's
wheels use are accepted, and each function is checked against numpy once
before first use. When any of that fails (numpy built against MKL or
Accelerate, an unknown symbol name, a mismatch), the functions return False
and callers do the same arithmetic with numpy: results then agree up to
floating-point rounding, never in kind.

Set ``CORE_FUSED_GEMM=0`` in the environment to switch the fused calls off
(``set_threads`` stays on).
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_PREFIX = {_F32: "s", _F64: "d"}
_REAL = {_F32: ctypes.c_float, _F64: ctypes.c_double}
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


def _argtypes(kind: str, real) -> list:
    if kind == "gemm":
        return [ctypes.c_int, ctypes.c_int, ctypes.c_int, _I64, _I64, _I64,
                real, _PTR, _I64, _PTR, _I64, real, _PTR, _I64]
    if kind == "axpby":
        return [_I64, real, _PTR, _I64, real, _PTR, _I64]
    return [_I64, real, _PTR, _I64, _PTR, _I64]  # axpy


_state: dict = {}


def _library_paths() -> list[str]:
    base = os.path.dirname(np.__file__)
    pats = [os.path.join(base + ".libs", "*openblas*"), os.path.join(base, ".dylibs", "*openblas*")]
    return sorted(p for pat in pats for p in glob.glob(pat))


def _load() -> dict:
    """Resolve and check the functions once: ``{(kind, dtype): function}``."""
    if os.environ.get("CORE_FUSED_GEMM", "1").strip().lower() in ("0", "false", "no", "off"):
        return {}
    for path in _library_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        funcs = {}
        for dtype, p in _PREFIX.items():
            for kind in ("gemm", "axpby", "axpy"):
                # numpy >= 2.0 (scipy-openblas), then numpy 1.2x (openblas64_)
                for name in (f"scipy_cblas_{p}{kind}64_", f"cblas_{p}{kind}64_"):
                    fn = getattr(lib, name, None)
                    if fn is not None:
                        fn.argtypes = _argtypes(kind, _REAL[dtype])
                        fn.restype = None
                        funcs[(kind, dtype)] = fn
                        break
        if funcs:
            return {key: fn for key, fn in funcs.items() if _self_test(key, fn)}
    return {}


def _self_test(key, fn) -> bool:
    kind, dtype = key
    rng = np.random.default_rng(0)
    if kind == "gemm":
        a = rng.standard_normal((7, 5)).astype(dtype)
        b = rng.standard_normal((7, 3)).astype(dtype)
        c = rng.standard_normal((5, 3)).astype(dtype)
        want = c - 0.5 * (a.T @ b)
        fn(_ROW_MAJOR, _TRANS, _NO_TRANS, 5, 3, 7, -0.5, a.ctypes.data, 5, b.ctypes.data, 3,
           1.0, c.ctypes.data, 3)
        got = c
    else:
        x = rng.standard_normal(37).astype(dtype)
        y = rng.standard_normal(37).astype(dtype)
        if kind == "axpby":
            want = 0.25 * x + 0.75 * y
            fn(37, 0.25, x.ctypes.data, 1, 0.75, y.ctypes.data, 1)
        else:
            want = y - 0.25 * x
            fn(37, -0.25, x.ctypes.data, 1, y.ctypes.data, 1)
        got = y
    return bool(np.allclose(got, want, rtol=1e-4, atol=1e-5))


def _fn(kind: str, dtype):
    funcs = _state.get("funcs")
    if funcs is None:
        funcs = _state["funcs"] = _load()
    return funcs.get((kind, dtype))


def available(dtype=np.float32, kind: str = "gemm") -> bool:
    """Whether ``kind`` runs in BLAS for ``dtype``.

    Parameters
    ----------
    dtype : numpy dtype
        float32 or float64 (anything else: False).
    kind : str
        ``"gemm"`` (``gemm_tn_acc``), ``"axpby"`` or ``"axpy"``.

    Returns
    -------
    bool
    """
    return _fn(kind, np.dtype(dtype)) is not None


def gemm_tn_acc(a: np.ndarray, b: np.ndarray, c: np.ndarray, alpha: float) -> bool:
    """``c += alpha * a.T @ b`` in one BLAS call, if possible.

    Parameters
    ----------
    a : ndarray of shape (k, m), C-contiguous
    b : ndarray of shape (k, n), C-contiguous
    c : ndarray of shape (m, n), C-contiguous and writeable; updated in place
    alpha : float

    All three of the same dtype, float32 or float64.

    Returns
    -------
    bool
        True when done; False (and ``c`` untouched) when the arrays or the
        platform do not allow it, so the caller must do it with numpy instead.
    """
    fn = _fn("gemm", c.dtype)
    if fn is None:
        return False
    k, m = a.shape
    if (b.shape[0] != k or c.shape != (m, b.shape[1]) or a.dtype != c.dtype or b.dtype != c.dtype
            or not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous)
            or not c.flags.writeable or k == 0):
        return False
    n = b.shape[1]
    fn(_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, alpha, a.ctypes.data, m, b.ctypes.data, n,
       1.0, c.ctypes.data, n)
    return True


def _vector_ok(x: np.ndarray, y: np.ndarray) -> bool:
    return (x.dtype == y.dtype and x.size == y.size and x.size > 0
            and x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable)


def axpby(alpha: float, x: np.ndarray, beta: float, y: np.ndarray) -> bool:
    """``y = alpha * x + beta * y`` in place, in one BLAS pass if possible.

    Parameters
    ----------
    alpha, beta : float
    x : ndarray, float32 or float64, C-contiguous
    y : ndarray of the same size and dtype, C-contiguous and writeable; updated in place

    Returns
    -------
    bool
        True when done; False (``y`` untouched) when BLAS cannot take the arrays.
    """
    fn = _fn("axpby", y.dtype)
    if fn is None or not _vector_ok(x, y):
        return False
    fn(y.size, alpha, x.ctypes.data, 1, beta, y.ctypes.data, 1)
    return True


def axpy(alpha: float, x: np.ndarray, y: np.ndarray) -> bool:
    """``y += alpha * x`` in place, in one BLAS pass if possible.

    `axpby` with ``beta = 1`` (BLAS's own ``axpy``): the same arrays, the same
    True, or False with ``y`` untouched.
    """
    fn = _fn("axpy", y.dtype)
    if fn is None or not _vector_ok(x, y):
        return False
    fn(y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)
    return True


class Axpby:
    """`axpby` on one fixed pair of arrays, ``y = alpha * x + beta * y``, with the pointers resolved once.

    Parameters
    ----------
    x, y : ndarray
        As `axpby` takes them; kept alive here, so their pointers stay valid.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.arrays = (x, y)
        fn = _fn("axpby", y.dtype)
        self._call = (fn, y.size, x.ctypes.data, y.ctypes.data) if fn is not None and _vector_ok(x, y) else None

    def __call__(self, alpha: float, beta: float) -> bool:
        """Do ``y = alpha * x + beta * y``; False (``y`` untouched) when BLAS cannot take the arrays."""
        if self._call is None:
            return False
        fn, n, x, y = self._call
        fn(n, alpha, x, 1, beta, y, 1)
        return True


class AxpyPairs:
    """``y_i += alpha * x_i`` for a fixed list of array pairs: one BLAS ``axpy`` per pair (each array on its own, so
    every element is computed as by `axpy`), with the pointers resolved once instead of on every call.

    Parameters
    ----------
    xs, ys : lists of ndarray
        Pairs as `axpy` takes them (same size and dtype, C-contiguous, ``y`` writeable); the arrays are kept
        alive here, so their pointers stay valid.
    """

    def __init__(self, xs: list[np.ndarray], ys: list[np.ndarray]):
        self.arrays = (list(xs), list(ys))
        fns = [_fn("axpy", y.dtype) for y in ys]
        self.ok = len(xs) == len(ys) and all(f is not None for f in fns) \
            and all(_vector_ok(x, y) for x, y in zip(xs, ys))
        self._calls = [(f, y.size, x.ctypes.data, y.ctypes.data) for f, x, y in zip(fns, xs, ys)] if self.ok else []

    def __call__(self, alpha: float) -> bool:
        """Do every ``y_i += alpha * x_i``; False (nothing done) when BLAS cannot take the arrays."""
        if not self.ok:
            return False
        for fn, n, x, y in self._calls:
            fn(n, alpha, x, 1, y, 1)
        return True


def _thread_fns():
    """OpenBLAS's ``(set_num_threads, get_num_threads)`` from the library numpy loaded, or None."""
    if "threads" not in _state:
        _state["threads"] = None
        for path in _library_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for names in (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                          ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                          ("openblas_set_num_threads", "openblas_get_num_threads")):
                setter, getter = (getattr(lib, name, None) for name in names)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    _state["threads"] = (setter, getter)
                    break
            if _state["threads"] is not None:
                break
    return _state["threads"]


def get_threads() -> int | None:
    """The threads numpy's OpenBLAS uses now, or None when it is not an OpenBLAS this module finds."""
    fns = _thread_fns()
    return None if fns is None else int(fns[1]())


def set_threads(n: int) -> bool:
    """Make numpy's OpenBLAS use ``n`` threads from now on (what ``OPENBLAS_NUM_THREADS`` does at load).

    Parameters
    ----------
    n : int
        Threads, >= 1.

    Returns
    -------
    bool
        True when set; False when numpy's BLAS is not an OpenBLAS this module finds.
    """
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    fns = _thread_fns()
    if fns is None:
        return False
    fns[0](int(n))
    return True
