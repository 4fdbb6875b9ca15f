"""Suite-wide setup: make the repository importable when the package is not installed, and mark the tests that
measure time or latency ``serial``.

``make test`` runs the suite in two passes: every test not marked ``serial`` on two pytest-xdist workers (a file's
tests stay together on one worker, so module fixtures are built once), then the ``serial`` tests alone, because
they assert bounds on latency or elapsed time that another test running beside them would distort. A test is
``serial`` when its file is listed in ``SERIAL_FILES`` or it carries ``@pytest.mark.serial``.
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Files whose tests bound /healthz latency, a stop or start time, or an ETA against the clock.
SERIAL_FILES = (
    "tests/adversarial/",                    # /healthz p99 while an attack runs; timeouts by the second
    "tests/service/test_concurrency.py",     # p99 of twenty clients
    "tests/service/test_jobs_progress.py",   # ETA against elapsed time
    "tests/distributed/test_celery_executor.py",  # hand-back and start within a bound
)


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: runs alone in make test's second pass (it measures time)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).resolve().relative_to(ROOT).as_posix()
        if path.startswith(SERIAL_FILES):
            item.add_marker(pytest.mark.serial)
