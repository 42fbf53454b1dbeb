# The load balancer in front of the API replicas: Debian's nginx with docker/nginx.conf.
# It also shields the API from slow clients (header, body and send timeouts, buffering), which
# uvicorn does not do by itself. Built from the same base as the other images, so a host that
# can build those (with or without Docker Hub) can build this one.
#   DOCKER_BUILDKIT=1 docker build -f docker/lb.Dockerfile -t lugpi-lb .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /etc/nginx/sites-enabled/* \
    && mkdir -p /tmp/nginx \
    && chown -R www-data:www-data /tmp/nginx /var/lib/nginx /var/log/nginx
# No `nginx -t` here: it resolves the upstream names, which exist only inside the stack.
COPY docker/nginx.conf /etc/nginx/nginx.conf

# Unprivileged: it listens on 8080 and writes only under /tmp/nginx.
USER www-data
EXPOSE 8080
# nginx answers /lb-healthz itself; bash's /dev/tcp, as the image has no HTTP client.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /lb-healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
CMD ["nginx", "-g", "daemon off;"]
