"""Checks on the shape of the code itself (how the project is laid out), not its behaviour."""
from __future__ import annotations

import ast
import subprocess
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


def test_no_function_in_service_is_longer_than_80_lines():
    assert _functions_longer_than(80, SERVICE) == []


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


# -- imports: no cycle, and models/ does not reach into datasets/ --------------------------------------------------
PACKAGES = ("core", "service")


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in the file (inside functions too), as ast sees them."""
    files = {_module_of(p): p for pkg in PACKAGES for p in _sources(ROOT / pkg)}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..a import b
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_import_graph_sees_the_project():
    """The checks below read real edges (a graph that lost them would pass anything)."""
    graph = _import_graph()
    assert "service.storage.local" in graph["service.storage"]
    assert "service.deps" in graph["service.jobs.routes"]
    assert "core.network" in graph["core.training"] or "core.network" in graph["core"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_projects_modules():
    """core/ and service/ import each module only after everything it imports: no cycle, hidden in a function or not."""
    cycle = _find_cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_models_does_not_import_datasets():
    """Trained models stand on their own: service/models/ never imports service/datasets/ (shared code is in bodies)."""
    graph = _import_graph()
    reaching = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith("service.models")
                      for t in targets if t.startswith("service.datasets"))
    assert reaching == [], f"service.models imports service.datasets: {reaching}"


def test_no_symbolic_link_is_tracked():
    """A worktree's ``.venv`` link to the shared virtualenv, committed by ``git add -A``, replaced the virtualenv
    itself when it landed in the main checkout (git treats an ignored directory as expendable): no links in git."""
    listing = subprocess.run(["git", "ls-files", "--stage"], cwd=ROOT, capture_output=True, text=True, check=True)
    links = [line.split("\t", 1)[1] for line in listing.stdout.splitlines() if line.startswith("120000 ")]
    assert links == [], f"tracked symbolic links: {links} (untrack them: git rm --cached <path>)"
