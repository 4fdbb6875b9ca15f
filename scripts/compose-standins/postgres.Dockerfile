# Stand-in for the official postgres image where no registry can be reached: Debian's PostgreSQL 15 on the
# local base image, with an entrypoint that honours POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 gosu && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/bin/bash", "/entrypoint.sh"]
