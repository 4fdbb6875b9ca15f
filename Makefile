# mlp-service: `make serve` runs the server, `make test` the suite, `make bench` the benchmarks.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: venv test serve bench bench-core bench-service bench-serving clean chromium

$(VENV)/.ok-run: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.ok-test: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,distributed]'
	touch $@ $(VENV)/.ok-run

# The bench extra pins torch==2.13.0. Where pip's find-links hold a local CPU wheel of it, that wheel is
# installed first (alone, no index): from the index the same version resolves to a CUDA build of several GB.
$(VENV)/.ok-bench: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	-$(PY) -m pip install -q --no-index --no-deps torch==2.13.0 2>/dev/null
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@ $(VENV)/.ok-run

venv: $(VENV)/.ok-run

## the whole test suite: tests that time nothing on two xdist workers, then the timing tests (`serial`) alone
test: $(VENV)/.ok-test chromium
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not serial" tests; parallel=$$?; \
	$(PY) -m pytest -q -m serial tests; serial=$$?; \
	echo "make test: parallel pass exit $$parallel, serial pass exit $$serial"; [ $$parallel = 0 ] && [ $$serial = 0 ]

# tests/ui drives Debian's chromium with Playwright (`playwright install` downloads nothing here): installed when
# missing and we are root (CI); otherwise the UI test fails saying how to install it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || true

## start the API on http://$(HOST):$(PORT) with the embedded defaults (SQLite, ./data, local workers)
serve: $(VENV)/.ok-run
	$(VENV)/bin/mlp-service serve --host $(HOST) --port $(PORT)

## engine and service benchmarks (installs PyTorch 2.13.0 CPU for comparison)
bench: bench-core bench-service

bench-core: $(VENV)/.ok-bench
	$(PY) bench/core_train.py

bench-service: $(VENV)/.ok-bench
	$(PY) bench/service.py

## every predict protocol (/v1 JSON, .npy, Arrow; OIP v2 JSON and binary) in one run
bench-serving: $(VENV)/.ok-bench
	$(PY) bench/serving.py

clean:
	rm -rf $(VENV) data .pytest_cache
