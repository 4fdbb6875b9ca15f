"""Checks on the shape of the code itself (how the project is laid out), not its behaviour."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _functions_longer_than(limit: int, folder: Path) -> list[str]:
    """``path:line name (n lines)`` of every function or method under ``folder`` longer than ``limit``
    lines, counted from its ``def`` (or first decorator's line, as ast gives it) to its last line."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(folder).as_posix()}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_in_core_is_longer_than_80_lines():
    assert _functions_longer_than(80, ROOT / "core") == []


def test_the_function_length_check_finds_a_long_method(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(79))
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{body}\n")
    assert _functions_longer_than(80, tmp_path) == []
    (tmp_path / "m.py").write_text(f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{body}\n"
                                   "        return x0\n")
    assert _functions_longer_than(80, tmp_path) == ["m.py:6 long (81 lines)"]
