#!/usr/bin/env bash
# Make a Debian bookworm base image with Python 3.11, for hosts that cannot pull from Docker Hub
# (the Dockerfiles' default bases are the official images). Needs root, debootstrap and a
# reachable Debian archive. Usage:
#
#   sudo docker/make-base-image.sh [TAG]        # default TAG: lugpi-base:bookworm
#
# Then build with --build-arg BASE_IMAGE=TAG (docker/build-images.sh does).
# An image already present under TAG is kept (set LUGPI_REBUILD_BASE=1 to make it again), so
# CI on a machine that built it before does not pay the ~1 minute twice.
set -euo pipefail

TAG=${1:-lugpi-base:bookworm}
MIRROR=${LUGPI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${LUGPI_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

if [[ -z ${LUGPI_REBUILD_BASE:-} ]] && docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "make-base-image: $TAG exists; keeping it (LUGPI_REBUILD_BASE=1 makes it again)"
  exit 0
fi
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "make-base-image: $tool is not installed" >&2; exit 1; }
done
if [[ $(id -u) != 0 ]]; then
  echo "make-base-image: debootstrap needs root (run with sudo)" >&2
  exit 1
fi

root=$(mktemp -d /tmp/lugpi-base.XXXXXX)
trap 'rm -rf "$root"' EXIT

# python3-venv: Debian's Python is "externally managed" (PEP 668), so the images install into
# a venv, as they do on the official python images.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" "$MIRROR"

# The same sources a debian:bookworm image has, so `apt-get install` in a build gets updates.
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
# As in the official slim images: no recommended packages, no package caches (apt's binary
# caches alone are ~90 MB after an `apt-get update`).
cat >"$root/etc/apt/apt.conf.d/90lugpi-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*.log

tar --numeric-owner -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap --variant=minbase bookworm (docker/make-base-image.sh)" \
  - "$TAG"
docker image ls "$TAG"
