# Redis for the deployment (broker, task results, job records), from Debian's package on the
# same base as the other images: no Docker Hub image needed. Persistence is set by the
# command in docker/compose.yaml (append-only file under /data, a volume).
#   DOCKER_BUILDKIT=1 docker build -f docker/redis.Dockerfile -t lugpi-redis .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && mkdir -p /data \
    && chown redis:redis /data

USER redis
WORKDIR /data
EXPOSE 6379
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["redis-cli", "ping"]
CMD ["redis-server", "--dir", "/data", "--bind", "0.0.0.0", "--protected-mode", "no"]
