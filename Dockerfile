# mlp-service image: the API (`mlp-service serve`, the default command) and, from the same image,
# Celery workers (`mlp-service worker`). Multi-stage: wheels are built in `deps` (dependencies) and
# `app` (this project); the runtime gets a venv with those wheels installed and nothing else (no
# compilers or build tools, no tests, no PyTorch, no pip inside the venv).
#
#   docker build -t mlp-service .
#   docker run -d -p 8000:8000 -v mlp-data:/data mlp-service
#
# Where no registry is reachable, point BASE_IMAGE at a local Python image and/or set the pip
# index build args, e.g. --build-arg PIP_INDEX_URL=https://pypi.internal/simple

ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- deps: wheels of the runtime deps
FROM ${BASE_IMAGE} AS deps
# pip index settings (unset by default: pip's own defaults apply)
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_FIND_LINKS
ARG PIP_DEFAULT_TIMEOUT=120
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml ./
# Only pyproject.toml is in this layer, so the (slow) dependency wheels are rebuilt only when the
# dependency lists change. Runtime deps + the `distributed` extra (Celery/Redis/PostgreSQL workers)
# + the `onnx` extra (GET /v1/models/{id}/export?format=onnx).
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['distributed'] + p['optional-dependencies']['onnx']))" \
    > requirements.txt \
 && cat requirements.txt \
 && pip wheel --wheel-dir /wheels/deps -r requirements.txt

# ---------------------------------------------------------------- app: the project's own wheel
FROM deps AS app
COPY README.md ./
COPY core ./core
COPY service ./service
COPY mlp_client ./mlp_client
RUN pip wheel --no-deps --wheel-dir /wheels/app . \
 && ls -l /wheels/app

# ---------------------------------------------------------------- venv: install the dependency wheels
# Installed here and copied whole into the runtime stage, so the wheel files never become an
# image layer. Same base image as the runtime, so the venv's interpreter links stay valid.
FROM ${BASE_IMAGE} AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# binutils (strip, readelf) for this stage only: the runtime image copies the venv, not the tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /wheels/deps /tmp/wheels/deps
# The venv has no pip of its own (nothing is installed at run time): the base image's pip installs
# into it, without compiling bytecode (the runtime stage compiles only what the commands import).
# Dropped, as nothing at run time reads them:
#  - third-party test suites and test data (numpy/**/tests, onnx/backend/test: 17 MB of models);
#  - pyarrow's build inputs (C++ headers, Cython sources) and Arrow Flight, an RPC framework that
#    only `import pyarrow.flight` loads (libarrow_flight: 27 MB); pyarrow.csv/parquet/ipc/compute/
#    dataset are all kept;
#  - pyarrow's byte-identical copies of libarrow_python*.so: the link names become symlinks to the
#    .so.<ABI> file that the extension modules load.
#  - pysimdjson's C++ and Cython sources (simdjson.cpp/.h: 7.6 MB; the compiled module is kept).
#  - DWARF debug info in compiled extensions (uvloop, SQLAlchemy, aiohttp, ...: about 50 MB), with
#    `strip --strip-debug` (symbols stay). Libraries that auditwheel patched (an RPATH/RUNPATH, and the
#    vendored *.libs/) are left as they are.
RUN python3 -m venv --without-pip /opt/venv \
 && python3 -m pip --python /opt/venv/bin/python install --no-index --no-compile \
        --find-links=/tmp/wheels/deps /tmp/wheels/deps/*.whl \
 && rm -rf /tmp/wheels \
 && cd /opt/venv/lib/python3*/site-packages \
 && find . -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf onnx/backend/test \
 && rm -f simdjson/*.cpp simdjson/*.h simdjson/*.pyx simdjson/*.pxd \
 && cd pyarrow \
 && rm -rf include src includes conftest.py *.pyx *.pxd *.pxi \
           flight.py _flight.*.so libarrow_flight.so* libarrow_python_flight.so* _pyarrow_cpp_tests.*.so \
 && for lib in libarrow_python libarrow_python_parquet_encryption; do \
        so=$(ls $lib.so.[0-9]* | grep -E '\.so\.[0-9]+$') \
     && for f in $lib.so $lib.so.*; do [ "$f" = "$so" ] || ln -sf "$so" "$f"; done; \
    done \
 && cd .. \
 && find . -name '*.so*' -type f ! -path '*.libs/*' | while read -r f; do \
        if readelf -S "$f" | grep -q '\.debug_info' && ! readelf -d "$f" | grep -qE 'RPATH|RUNPATH'; then \
            strip --strip-debug "$f"; \
        fi; \
    done \
 && cd / && /opt/venv/bin/python -c "import pyarrow.csv, pyarrow.parquet, pyarrow.ipc, pyarrow.compute, \
pyarrow.dataset, onnx.helper, uvloop, httptools, sqlalchemy.engine, aiohttp, pydantic_core, orjson, psycopg, \
simdjson"

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mlp-service" \
      org.opencontainers.image.description="REST service that trains multilayer perceptrons (NumPy engine)"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# Dependencies (a layer that changes only with pyproject.toml), then the project's own wheel.
COPY --from=venv /opt/venv /opt/venv
COPY --from=app /wheels/app /tmp/wheels/app
# Bytecode only for the modules that the API server and its training processes import (every upload
# format, ONNX export, sweeps): about 21 MB of .pyc instead of 63 MB for every module installed.
# Without any, each start compiles in memory (here 14 s to import the app instead of 6 s); other
# modules (the Celery worker, alembic, s3fs/botocore) are compiled in memory when imported.
RUN python3 -m pip --python /opt/venv/bin/python install --no-index --no-deps --no-compile \
        /tmp/wheels/app/*.whl \
 && rm -rf /tmp/wheels \
 && /opt/venv/bin/mlp-service --help >/dev/null \
 && MLP_DATA_DIR=/tmp/warm-up PYTHONDONTWRITEBYTECODE= /opt/venv/bin/python -c "import importlib; \
[importlib.import_module(m) for m in ('service.cli', 'service.executor.embedded', 'service.executor._entry', \
 'service.executor.worker', 'service.datasets.tabular', 'service.models.formats', 'service.models.export', \
 'pyarrow.parquet', 'pyarrow.ipc', 'pyarrow.dataset', 'onnx.helper', 'onnx.numpy_helper')]; \
from service.app import create_app; create_app()" \
 && rm -rf /tmp/warm-up

# Schema migrations (not part of the wheel): `docker run IMAGE alembic upgrade head` runs them against
# MLP_DATABASE_URL (the scale-out setup with PostgreSQL); the embedded SQLite default needs nothing.
COPY alembic.ini /opt/mlp-service/alembic.ini
COPY migrations /opt/mlp-service/migrations

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ALEMBIC_CONFIG=/opt/mlp-service/alembic.ini \
    MLP_DATA_DIR=/data

# Unprivileged user; /data is created owned by it so a fresh named volume inherits the ownership.
RUN groupadd --system --gid 10001 mlp \
 && useradd --system --uid 10001 --gid mlp --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin mlp \
 && mkdir -p /data \
 && chown mlp:mlp /data
USER mlp:mlp
WORKDIR /data
VOLUME ["/data"]

EXPOSE 8000
# No curl in slim images: probe with the interpreter that is already there.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('MLP_HEALTHCHECK_URL', 'http://127.0.0.1:8000/healthz'), timeout=2)"]

# `docker run IMAGE mlp-service worker` runs a Celery worker from the same image.
CMD ["mlp-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
