# syntax=docker/dockerfile:1
# The serving image: CPU only, onnxruntime + tokenizers + numpy. No torch, no transformers,
# no diffusers: only the `api` extra is installed (tests/e2e/test_compose_static.py checks it).
# Build from the repository root:  docker build -f docker/api.Dockerfile -t lugpi-api .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A fixed uid shared with the worker image, so both can write the shared volumes.
RUN groupadd --gid 10001 lugpi \
    && useradd --uid 10001 --gid lugpi --create-home --shell /usr/sbin/nologin lugpi \
    && python -m venv /opt/venv \
    && mkdir -p /data/models /data/artifacts /data/datasets \
    && chown -R lugpi:lugpi /data

WORKDIR /app
# Only what the API imports: the torch-free contracts in training/ and the api package.
COPY pyproject.toml README.md ./
COPY training ./training
COPY api ./api
RUN pip install ".[api]" \
    && pip check \
    && python -c "import importlib.util as u; bad = [m for m in ('torch', 'transformers', 'diffusers') if u.find_spec(m)]; assert not bad, f'API image must not contain {bad}'"

# Paths inside the container; compose mounts volumes here. Every LUGPI_* variable is a field
# of api.settings.ApiSettings (see docker/.env.example for the rest).
ENV LUGPI_MODEL_REPOSITORY=/data/models \
    LUGPI_ARTIFACTS_DIR=/data/artifacts \
    LUGPI_DATA_ROOTS=/data/datasets

USER lugpi
EXPOSE 8000
# /healthz says the process answers; /readyz (models loaded) is for a load balancer.
# python, not curl: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# --limit-concurrency: beyond 256 connections + tasks uvicorn answers 503 at once (memory and
# file descriptors stay bounded); --timeout-keep-alive: idle keep-alive connections close
# after 5 s; HeaderTimeoutProtocol: a client that has not sent its request head within
# LUGPI_HEADER_TIMEOUT_S is cut off; SIGTERM finishes in-flight requests for up to 20 s.
CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", \
     "--proxy-headers", "--timeout-graceful-shutdown", "20", "--limit-concurrency", "256", \
     "--timeout-keep-alive", "5", "--http", "api.http_protocol:HeaderTimeoutProtocol"]
