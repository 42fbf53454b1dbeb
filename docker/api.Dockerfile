# The serving image: CPU only, onnxruntime + tokenizers + numpy. No torch, no transformers,
# no diffusers: only the `api` and `queue` extras are installed (the build checks it, and so does
# tests/e2e/test_compose_static.py).
#
# Build with BuildKit from the repository root (docker/build-images.sh does, with the inputs
# below taken from the host):
#   DOCKER_BUILDKIT=1 docker build -f docker/api.Dockerfile -t lugpi-api .
# Optional build inputs, seen by the pip steps only and never stored in the image:
#   --secret id=ca-certificates,src=FILE   PEM bundle pip trusts (a TLS-intercepting proxy)
#   --secret id=pip.conf,src=FILE          a pip configuration (an index mirror...)
#   --secret id=pip-constraints,src=FILE   a pip constraints file
#   --build-arg BASE_IMAGE=IMAGE           any Debian-like image with python3 >= 3.11 and venv
#                                          (docker/make-base-image.sh makes one without Hub)
# No `# syntax=` line: the Dockerfile frontend built into Docker >= 20.10 has everything used
# here, and fetching another one needs Docker Hub.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A fixed uid shared with the worker image, so both can write the shared volumes. A venv
# works on the official images and on Debian's own Python (PEP 668 forbids pip outside one).
RUN groupadd --gid 10001 lugpi \
    && useradd --uid 10001 --gid lugpi --create-home --shell /usr/sbin/nologin lugpi \
    && python3 -m venv /opt/venv \
    && mkdir -p /data/models /data/artifacts /data/datasets \
    && chown -R lugpi:lugpi /data

# Dependencies first, from pyproject.toml alone: a change to the code leaves this layer cached.
COPY pyproject.toml /tmp/pyproject.toml
RUN --mount=type=bind,source=docker/build,target=/build \
    --mount=type=secret,id=ca-certificates \
    --mount=type=secret,id=pip.conf \
    --mount=type=secret,id=pip-constraints \
    python /build/requirements.py /tmp/pyproject.toml api queue > /tmp/requirements.txt \
    && /build/pip.sh install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt /tmp/pyproject.toml

# The project itself: only the packages the API imports (tests/e2e/test_compose_static.py
# checks the list). COPY, not a bind mount of the context: Docker 20.10's BuildKit does not
# rebuild a RUN step when a file under a bind-mounted context changes, COPY's cache follows
# the files' content. The copy (under 1 MB) stays only in its COPY layers.
COPY pyproject.toml README.md /tmp/src/
COPY contracts /tmp/src/contracts
COPY jobs /tmp/src/jobs
COPY runtime /tmp/src/runtime
COPY api /tmp/src/api
RUN --mount=type=bind,source=docker/build,target=/build \
    --mount=type=secret,id=ca-certificates \
    --mount=type=secret,id=pip.conf \
    --mount=type=secret,id=pip-constraints \
    /build/pip.sh install --no-deps /tmp/src \
    && rm -rf /tmp/src \
    && python -m pip check \
    && python -c "import importlib.util as u; bad = [m for m in ('torch', 'transformers', 'diffusers') if u.find_spec(m)]; assert not bad, f'API image must not contain {bad}'" \
    && python -c "import api.main"

# Paths inside the container; compose mounts volumes here. Every LUGPI_* variable is a field
# of api.settings.ApiSettings (see docker/.env.example for the rest).
ENV LUGPI_MODEL_REPOSITORY=/data/models \
    LUGPI_ARTIFACTS_DIR=/data/artifacts \
    LUGPI_DATA_ROOTS=/data/datasets

USER lugpi
WORKDIR /home/lugpi
EXPOSE 8000
# /healthz says the process answers; /readyz (models loaded) is for a load balancer.
# python, not curl: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# --limit-concurrency: beyond 256 requests being worked on uvicorn answers 503 at once (with
# HeaderTimeoutProtocol idle connections and bodies still arriving do not count); --timeout-
# keep-alive: idle keep-alive connections close after 5 s; HeaderTimeoutProtocol: a client
# that has not sent its request head within LUGPI_HEADER_TIMEOUT_S, or its body within
# LUGPI_BODY_TIMEOUT_S at LUGPI_MIN_BODY_BYTES_PER_S, is cut off; SIGTERM finishes in-flight
# requests for up to 20 s.
# In the compose deployment nginx in front also bounds body and send times (docker/nginx.conf).
CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", \
     "--proxy-headers", "--timeout-graceful-shutdown", "20", "--limit-concurrency", "256", \
     "--timeout-keep-alive", "5", "--http", "api.http_protocol:HeaderTimeoutProtocol"]
