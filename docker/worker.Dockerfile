# The training worker: torch, transformers, diffusers, onnxruntime, the `worker` extra.
# Two variants, chosen with --build-arg VARIANT:
#   cuda (default)  CUDA base image, CUDA torch, onnxruntime-gpu (`worker` + `gpu` extras)
#   cpu             a Python base image, the CPU torch wheel, onnxruntime (`worker` extra)
# Build with BuildKit from the repository root (docker/build-images.sh does):
#   DOCKER_BUILDKIT=1 docker build -f docker/worker.Dockerfile -t lugpi-worker .
#   DOCKER_BUILDKIT=1 docker build -f docker/worker.Dockerfile --build-arg VARIANT=cpu \
#       -t lugpi-worker:cpu .
# Optional build inputs (pip's CA bundle, configuration and constraints as secrets, local wheels
# in docker/wheels/): see api.Dockerfile. They are used by the pip steps and not stored.
#
# torch 2.13.0's Linux wheel on PyPI is the CUDA 13.0 build (it pulls cuda-toolkit 13.0.x and
# cuDNN 9 as pip packages), and current onnxruntime-gpu wheels on PyPI target CUDA 13 too.
# The CUDA base image matches that major version; the host needs an NVIDIA driver for CUDA 13
# (>= 580) and the NVIDIA Container Toolkit. For another CUDA, override CUDA_IMAGE and
# TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cu128) together.
# The CPU variant pins torch==<version>+cpu, a version only CPU builds carry, so pip can never
# fall back to the multi-GB CUDA wheel: it takes the wheel from docker/wheels/ or from
# TORCH_INDEX_URL (https://download.pytorch.org/whl/cpu), or the build stops. The CUDA variant
# excludes +cpu, so a CPU wheel lying in docker/wheels/ is not taken for it.
ARG VARIANT=cuda
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
ARG BASE_IMAGE=python:3.11-slim-bookworm

# BuildKit builds only the stage the last FROM names, so the other base is never pulled.
FROM ${CUDA_IMAGE} AS base-cuda
# Ubuntu 24.04's python3 is 3.12 (the project needs >= 3.11).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

FROM ${BASE_IMAGE} AS base-cpu

FROM base-${VARIANT}
ARG VARIANT
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/data/hf-cache

# Same uid as the API image, so both can write the shared volumes. Ubuntu images ship a
# user "ubuntu" with uid 1000; 10001 does not collide with it.
RUN groupadd --gid 10001 lugpi \
    && useradd --uid 10001 --gid lugpi --create-home --shell /usr/sbin/nologin lugpi \
    && python3 -m venv /opt/venv \
    && mkdir -p /data/models /data/artifacts /data/datasets /data/hf-cache \
    && chown -R lugpi:lugpi /data

# torch first, in its own layer: it is most of the image and changes least. Pinned, because
# a bare `torch` requirement would let pip pick any build.
RUN --mount=type=bind,source=docker/build,target=/build \
    --mount=type=bind,source=docker/wheels,target=/wheels \
    --mount=type=secret,id=ca-certificates \
    --mount=type=secret,id=pip.conf \
    --mount=type=secret,id=pip-constraints \
    if [ "$VARIANT" = cpu ]; then \
      spec="torch==${TORCH_VERSION}+cpu"; \
      if [ -z "$TORCH_INDEX_URL" ] && ! ls /wheels/torch-${TORCH_VERSION}+cpu-*.whl >/dev/null 2>&1; then \
        echo "VARIANT=cpu needs the CPU torch wheel: put torch-${TORCH_VERSION}+cpu-*.whl in docker/wheels/ (docker/build-images.sh does) or pass --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" >&2; \
        exit 1; \
      fi; \
    else \
      spec="torch==${TORCH_VERSION},!=${TORCH_VERSION}+cpu"; \
    fi \
    && /build/pip.sh install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "$spec"

# The other dependencies, from pyproject.toml alone (code changes leave this layer cached).
# The `train` extra brings the CPU `onnxruntime`; it and onnxruntime-gpu install the same
# module and shadow each other, so the GPU variant drops the CPU one and reinstalls its own.
COPY pyproject.toml /tmp/pyproject.toml
RUN --mount=type=bind,source=docker/build,target=/build \
    --mount=type=bind,source=docker/wheels,target=/wheels \
    --mount=type=secret,id=ca-certificates \
    --mount=type=secret,id=pip.conf \
    --mount=type=secret,id=pip-constraints \
    if [ "$VARIANT" = cpu ]; then extras="worker"; else extras="worker gpu"; fi \
    && python /build/requirements.py /tmp/pyproject.toml $extras > /tmp/requirements.txt \
    && /build/pip.sh install -r /tmp/requirements.txt \
    && if [ "$VARIANT" != cpu ]; then \
         python -m pip uninstall -y onnxruntime \
         && /build/pip.sh install --force-reinstall --no-deps "onnxruntime-gpu>=1.20"; \
       fi \
    && rm /tmp/requirements.txt /tmp/pyproject.toml \
    && python /build/check-worker.py "$VARIANT"

# The project itself: only the packages the worker imports, copied (not bind-mounted: see
# api.Dockerfile) and installed without dependencies.
COPY pyproject.toml README.md /tmp/src/
COPY contracts /tmp/src/contracts
COPY jobs /tmp/src/jobs
COPY runtime /tmp/src/runtime
COPY training /tmp/src/training
COPY models /tmp/src/models
COPY worker /tmp/src/worker
RUN --mount=type=bind,source=docker/build,target=/build \
    --mount=type=secret,id=ca-certificates \
    --mount=type=secret,id=pip.conf \
    --mount=type=secret,id=pip-constraints \
    /build/pip.sh install --no-deps /tmp/src \
    && rm -rf /tmp/src \
    && python -m pip check \
    && python -c "import worker.tasks"

# Every LUGPI_* variable is a field of worker.settings.WorkerSettings.
ENV LUGPI_MODEL_REPOSITORY=/data/models \
    LUGPI_ARTIFACTS_DIR=/data/artifacts

USER lugpi
WORKDIR /home/lugpi
# A solo-pool worker cannot answer `celery inspect ping` while it trains (one task blocks its
# only thread), so the health check asks what matters between tasks and during them: is the
# broker reachable from here.
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, redis; redis.Redis.from_url(os.environ['LUGPI_REDIS_URL'], socket_timeout=5).ping()"]
# `lugpi-worker`: celery -A worker.app worker --pool=solo --concurrency=1 on every LUGPI
# queue (worker/__main__.py). One task per process: CUDA is not fork-safe.
CMD ["lugpi-worker", "--hostname=worker@%h"]
