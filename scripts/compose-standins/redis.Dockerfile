# Stand-in for the official redis image where no registry can be reached: Debian's redis-server on the
# local base image. Like the official entrypoint, it accepts connections from the compose network.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*
WORKDIR /data
ENTRYPOINT ["/bin/sh", "-c", "exec \"$@\" --protected-mode no", "--"]
CMD ["redis-server"]
