#!/usr/bin/env bash
# Build the four images of the compose deployment (docker/compose.yaml), with this host's pip
# setup passed in as build inputs (docker/build/host_inputs.py): the CA bundle, constraints and
# pip.conf as BuildKit secrets, the CPU torch wheel through the build context. None of them
# ends up in an image.
#
#   docker/build-images.sh                     # lugpi-{api,worker,lb,redis}:latest, CUDA worker
#   LUGPI_WORKER_VARIANT=cpu LUGPI_BASE_IMAGE=lugpi-base:bookworm LUGPI_IMAGE_TAG=dev \
#       docker/build-images.sh                 # what tests/deploy builds (CPU worker)
#
# Settings (environment): LUGPI_IMAGE_TAG (latest), LUGPI_BASE_IMAGE (python:3.11-slim-bookworm;
# docker/make-base-image.sh makes one without Docker Hub), LUGPI_WORKER_VARIANT (cuda | cpu),
# LUGPI_TORCH_INDEX_URL (where a torch build comes from, when not PyPI or docker/wheels/).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${LUGPI_IMAGE_TAG:-latest}
BASE=${LUGPI_BASE_IMAGE:-python:3.11-slim-bookworm}
VARIANT=${LUGPI_WORKER_VARIANT:-cuda}
TORCH_VERSION=${LUGPI_TORCH_VERSION:-2.13.0}
case $VARIANT in cuda | cpu) ;; *)
  echo "build-images: LUGPI_WORKER_VARIANT=$VARIANT; use cuda or cpu" >&2
  exit 2
  ;;
esac

# BuildKit is needed (secrets, bind mounts, per-Dockerfile .dockerignore). Docker >= 23 has it
# through the buildx plugin; Docker 20.10 (Debian's docker.io) has it built in.
builder=()
for cli in docker /usr/bin/docker; do
  command -v "$cli" >/dev/null || continue
  if "$cli" buildx version >/dev/null 2>&1; then
    builder=("$cli" buildx build --load)
    break
  fi
  version=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null || echo 0)
  if ((${version%%.*} < 23)); then
    builder=(env DOCKER_BUILDKIT=1 "$cli" build)
    break
  fi
done
if ((${#builder[@]} == 0)); then
  echo "build-images: no docker client that builds with BuildKit: install the buildx plugin" \
    "(docker-buildx) or Docker 20.10's client (Debian: docker.io)" >&2
  exit 1
fi

inputs=$(mktemp -d /tmp/lugpi-build-inputs.XXXXXX)
trap 'rm -rf "$inputs"' EXIT
python3 docker/build/host_inputs.py "$inputs" docker/wheels "$TORCH_VERSION"
secrets=()
for id in ca-certificates pip-constraints pip.conf; do
  [[ -s $inputs/$id ]] && secrets+=(--secret "id=$id,src=$inputs/$id")
done

build() { # image dockerfile [docker build arguments...]
  local image=$1 file=$2 t0=$SECONDS
  shift 2
  echo "build-images: $image ($file)"
  "${builder[@]}" --progress=plain -f "docker/$file" -t "$image" \
    --build-arg "BASE_IMAGE=$BASE" "${secrets[@]}" "$@" . \
    >"$inputs/build.log" 2>&1 || {
    tail -40 "$inputs/build.log" >&2
    echo "build-images: building $image failed (the last lines of its log are above)" >&2
    return 1
  }
  echo "build-images: $image built in $((SECONDS - t0)) s"
}

build "lugpi-redis:$TAG" redis.Dockerfile
build "lugpi-lb:$TAG" lb.Dockerfile
build "lugpi-api:$TAG" api.Dockerfile
build "lugpi-worker:$TAG" worker.Dockerfile --build-arg "VARIANT=$VARIANT" \
  --build-arg "TORCH_VERSION=$TORCH_VERSION" \
  ${LUGPI_TORCH_INDEX_URL:+--build-arg "TORCH_INDEX_URL=$LUGPI_TORCH_INDEX_URL"}
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^lugpi-(redis|lb|api|worker):$TAG "
