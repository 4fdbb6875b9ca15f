"""Work-arounds for runtime defects: ast.literal_eval (numpy's .npy header parser) runs one call at a time."""

from __future__ import annotations

import ast
import threading

import numpy as np

from service import compat


class _Paused(str):
    """A header text whose evaluation waits until ``go`` is set: ``literal_eval`` calls ``lstrip`` first."""

    go = threading.Event()
    entered = threading.Event()

    def lstrip(self, chars=None):
        _Paused.entered.set()
        assert _Paused.go.wait(10)
        return str(self).lstrip(chars)


def test_literal_eval_calls_do_not_overlap(tmp_path):
    """While one thread is inside literal_eval, another's call (numpy reading an .npy header) waits for it: two
    ASTs are never built at once (CPython's shared recursion-depth state, python/cpython#106905, made that a
    500 on predict under 20 concurrent clients)."""
    compat.serialize_literal_eval()
    compat.serialize_literal_eval()                       # idempotent: one lock, not two wrappers
    path = tmp_path / "a.npy"
    np.save(path, np.arange(6.0).reshape(2, 3))
    first = threading.Thread(target=ast.literal_eval, args=(_Paused("{'a': 1}"),))
    first.start()
    assert _Paused.entered.wait(10)
    loaded = []
    second = threading.Thread(target=lambda: loaded.append(np.load(path)))
    second.start()
    second.join(0.5)
    assert second.is_alive() and not loaded              # waits while the first call is inside
    _Paused.go.set()
    first.join(10)
    second.join(10)
    assert loaded and loaded[0].shape == (2, 3)
