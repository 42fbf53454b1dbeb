# syntax=docker/dockerfile:1
# The GPU training worker: CUDA, torch, onnxruntime-gpu, the `worker` and `gpu` extras.
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t lugpi-worker .
#
# torch 2.13.0's Linux wheel on PyPI is the CUDA 13.0 build (it pulls cuda-toolkit 13.0.x and
# cuDNN 9 as pip packages), and current onnxruntime-gpu wheels on PyPI target CUDA 13 too.
# The base image matches that major version; the host needs an NVIDIA driver for CUDA 13
# (>= 580) and the NVIDIA Container Toolkit. For another CUDA, override CUDA_IMAGE and
# TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cu128) together.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=""
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/data/hf-cache

# Ubuntu 24.04's python3 is 3.12 (the project needs >= 3.11).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

# Same uid as the API image, so both can write the shared volumes. Ubuntu images ship a
# user "ubuntu" with uid 1000; 10001 does not collide with it.
RUN groupadd --gid 10001 lugpi \
    && useradd --uid 10001 --gid lugpi --create-home --shell /usr/sbin/nologin lugpi \
    && mkdir -p /data/models /data/artifacts /data/datasets /data/hf-cache \
    && chown -R lugpi:lugpi /data

# torch first, in its own layer: it is most of the image and changes least. Pinned, because
# a bare `torch` requirement would let pip pick any build.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY training ./training
COPY models ./models
COPY worker ./worker
COPY api ./api
# The `train` extra brings the CPU `onnxruntime`; it and onnxruntime-gpu install the same
# module and shadow each other, so drop the CPU one and reinstall the GPU one over it.
RUN pip install ".[worker,gpu]" \
    && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps "onnxruntime-gpu>=1.20" \
    && python -c "import onnxruntime as ort; p = ort.get_available_providers(); assert 'CUDAExecutionProvider' in p, p" \
    && python -c "import torch; assert torch.version.cuda, 'torch is a CPU build'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

# Every LUGPI_* variable is a field of worker.settings.WorkerSettings.
ENV LUGPI_MODEL_REPOSITORY=/data/models \
    LUGPI_ARTIFACTS_DIR=/data/artifacts

USER lugpi
# A solo-pool worker cannot answer `celery inspect ping` while it trains (one task blocks its
# only thread), so the health check asks what matters between tasks and during them: is the
# broker reachable from here.
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, redis; redis.Redis.from_url(os.environ['LUGPI_REDIS_URL'], socket_timeout=5).ping()"]
# `lugpi-worker`: celery -A worker.app worker --pool=solo --concurrency=1 on every LUGPI
# queue (worker/__main__.py). One task per process: CUDA is not fork-safe.
CMD ["lugpi-worker", "--hostname=worker@%h"]
