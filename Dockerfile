# syntax=docker/dockerfile:1.4
# mlp-service image: the API (`mlp-service serve`, the default command) and, from the same image,
# Celery workers (`mlp-service worker`). Multi-stage: wheels are built in `deps`/`app`, and the
# runtime stage installs those wheels only (no compilers, no tests, no PyTorch).
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
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
# Only pyproject.toml is in this layer, so the (slow) dependency wheels are rebuilt only when the
# dependency lists change. Runtime deps + the `distributed` extra (Celery/Redis/PostgreSQL workers).
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['distributed']))" > requirements.txt \
 && cat requirements.txt \
 && pip wheel --wheel-dir /wheels/deps -r requirements.txt

# ---------------------------------------------------------------- app: the project's own wheel
FROM deps AS app
COPY README.md ./
COPY core ./core
COPY service ./service
RUN pip wheel --no-deps --wheel-dir /wheels/app . \
 && ls -l /wheels/app

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mlp-service" \
      org.opencontainers.image.description="REST service that trains multilayer perceptrons (NumPy engine)"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    MLP_DATA_DIR=/data

# Dependencies first (own layer, cached while pyproject.toml is unchanged), then the project wheel.
# pip is removed from the venv afterwards: nothing is installed at run time.
COPY --from=deps /wheels/deps /tmp/wheels/deps
RUN python -m venv "$VIRTUAL_ENV" \
 && "$VIRTUAL_ENV/bin/pip" install --no-index --find-links=/tmp/wheels/deps /tmp/wheels/deps/*.whl \
 && rm -rf /tmp/wheels
COPY --from=app /wheels/app /tmp/wheels/app
RUN "$VIRTUAL_ENV/bin/pip" install --no-index --no-deps /tmp/wheels/app/*.whl \
 && "$VIRTUAL_ENV/bin/pip" uninstall -y -q pip setuptools \
 && rm -rf /tmp/wheels \
 && mlp-service --help >/dev/null

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
