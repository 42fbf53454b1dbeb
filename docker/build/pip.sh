#!/bin/sh
# pip inside a docker build, with the build's optional inputs. Bind-mounted from the build
# context for one RUN step only, like the inputs themselves: none of it stays in the image.
#
#   /run/secrets/ca-certificates   PEM bundle to trust (a TLS-intercepting proxy's CA)
#   /run/secrets/pip.conf          a pip configuration (an index mirror, timeouts...)
#   /run/secrets/pip-constraints   a constraints file
#   /wheels/*.whl                  local wheels (docker/wheels/ in the build context)
#
# Each is used only when present, so a plain `docker build` works without any of them.
set -eu
if [ -s /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi
if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi
if [ -s /run/secrets/pip-constraints ]; then export PIP_CONSTRAINT=/run/secrets/pip-constraints; fi
if ls /wheels/*.whl >/dev/null 2>&1; then export PIP_FIND_LINKS=/wheels; fi
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
exec python -m pip "$@"
