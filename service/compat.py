"""Work-arounds for defects of the Python runtime the service runs on, applied once when the app is built."""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def serialize_literal_eval() -> None:
    """Make ``ast.literal_eval`` run one call at a time in this process.

    CPython keeps the AST constructor's recursion depth in per-interpreter state: when a thread building an AST
    is switched out (a garbage-collection finalizer can release the GIL mid-construction) and another thread
    builds one, the first fails with ``SystemError: AST constructor recursion depth mismatch``
    (python/cpython#106905, seen on 3.11.7). numpy reads every ``.npy`` header with ``ast.literal_eval``, and
    the API reads them in its thread pool: loading models, ``.npy`` predict bodies, ``.npz`` uploads. Twenty
    concurrent clients met it as a 500 on predict. A header is a few hundred bytes (microseconds to parse),
    so one lock costs nothing measurable. Idempotent.
    """
    if getattr(ast.literal_eval, "_serialized", False):
        return
    original = ast.literal_eval

    def literal_eval(node_or_string):
        with _LOCK:
            return original(node_or_string)

    literal_eval._serialized = True
    literal_eval.__doc__ = original.__doc__
    ast.literal_eval = literal_eval
