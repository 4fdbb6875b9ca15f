#!/usr/bin/env bash
# System packages the scale-out tests (tests/distributed) start as real servers: redis-server and the
# PostgreSQL 15 binaries (initdb, pg_ctl). Idempotent: installs only what is missing; needs root (or sudo)
# only when something is missing. The tests use MLP_TEST_REDIS_URL / MLP_TEST_POSTGRES_URL instead when set.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pg_ctl ] || missing+=(postgresql-15)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)

if [ ${#missing[@]} -eq 0 ]; then
    echo "ci-deps: redis-server and PostgreSQL 15 present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "ci-deps: need root to install ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
fi
echo "ci-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The packages' own clusters and services are not used: the tests run initdb/pg_ctl in temporary directories.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts the packaged servers where an init system runs; stop them so they hold no ports.
if command -v service >/dev/null 2>&1; then
    $SUDO service redis-server stop >/dev/null 2>&1 || true
    $SUDO service postgresql stop >/dev/null 2>&1 || true
fi
