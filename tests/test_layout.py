"""Checks on the shape of the code itself (how the project is laid out), not its behaviour."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service"


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


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_only_the_jobs_domain_writes_job_rows():
    """Executors call the verbs of service/jobs/ (claim, renew, requeue, finish); no other module updates a job."""
    writers = [f"{p.relative_to(ROOT)}:{i}" for p in _sources(SERVICE)
               for i, line in enumerate(p.read_text().splitlines(), 1) if "update(Job" in line]
    assert writers, "the check found no job writes at all: it no longer looks at the right code"
    outside = [w for w in writers if not w.startswith("service/jobs/")]
    assert outside == [], f"job rows written outside service/jobs/: {outside}"


def _environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read the process environment (``os.environ`` other than a plain write, ``os.getenv``)."""
    writes: set[int] = set()  # ids of os.environ nodes used only to write: environ[k] = v, environ.setdefault(...)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript):
                    writes.add(id(target.value))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and func.attr in ("setdefault", "update"):
                writes.add(id(func.value))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb") \
                and isinstance(node.value, ast.Name) and node.value.id == "os" and id(node) not in writes:
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" \
                and any(a.name in ("environ", "getenv", "environb") for a in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_environment_is_read_only_by_settings_and_the_cli():
    """Every knob is a field of the one Settings (MLP_ prefix); modules never read os.environ on their own."""
    allowed = {SERVICE / "settings.py", SERVICE / "cli.py"}
    found = {str(p.relative_to(ROOT)): lines for p in _sources(SERVICE) if p not in allowed
             for lines in [_environment_reads(ast.parse(p.read_text()))] if lines}
    assert found == {}, f"os.environ read outside settings.py and cli.py (file: lines): {found}"


def test_the_environment_check_tells_reads_from_writes():
    """The check above can fail: reads are found, the thread-limit writes before spawning are not."""
    reads = 'import os\na = os.environ.get("X")\nb = os.environ["Y"]\nc = os.getenv("Z")\nd = "W" in os.environ\n'
    assert _environment_reads(ast.parse(reads)) == [2, 3, 4, 5]
    writes = 'import os\nos.environ["X"] = "1"\nos.environ.setdefault("Y", "2")\nos.environ.update({"Z": "3"})\n'
    assert _environment_reads(ast.parse(writes)) == []
    assert _environment_reads(ast.parse("from os import environ\n")) == [1]
