# syntax=docker/dockerfile:1
# Images of this repository. Targets:
#   worker    the `flowable-worker` runtime: the distribution WITHOUT the operator extra, so the
#             image carries no kopf or kubernetes (tests/packaging proves the same install works)
#   operator  the `flowable-worker-operator` (kopf): the distribution WITH the operator extra
#             (tests/packaging/test_operator_install.py runs the same install)
#
# `docker build --target worker .` builds on the public Python image as it always did. `make
# images` (localstack/images/build.sh) builds both targets with podman on a base made from
# Debian's packages instead (BASE_IMAGE: no registry is reachable where the tests run), and
# `make test-images` runs them. Either base works because everything is installed into a venv at
# /opt/venv made with `python3 -m venv`: Debian's python3 has no pip of its own to install with.
#
# Build arguments: BASE_IMAGE; VERSION, IMAGE_SOURCE and IMAGE_REVISION fill the OCI labels.

ARG BASE_IMAGE=python:3.11-slim

# What both images run on: the base and the environment, nothing installed yet.
FROM ${BASE_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The installs happen here, so that the sources they read never become a layer of an image.
FROM runtime AS build
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY operator/ operator/

FROM build AS worker-venv
RUN pip install --no-cache-dir /src

FROM build AS operator-venv
RUN pip install --no-cache-dir "/src[operator]"

FROM runtime AS worker
ARG VERSION=0.0.0
ARG IMAGE_SOURCE=""
ARG IMAGE_REVISION=""
LABEL org.opencontainers.image.title="flowable-worker" \
      org.opencontainers.image.description="Worker runtime for Flowable external-worker jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${IMAGE_REVISION}" \
      org.opencontainers.image.source="${IMAGE_SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# pip stays in the venv: a handler image (examples/handler-image) installs its dependencies with it.
COPY --from=worker-venv /opt/venv /opt/venv
COPY LICENSE /usr/share/doc/flowable-worker-operator/LICENSE
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin worker
USER 10001
# /metrics, /healthz, /readyz
EXPOSE 9464
ENTRYPOINT ["flowable-worker"]

FROM runtime AS operator
ARG VERSION=0.0.0
ARG IMAGE_SOURCE=""
ARG IMAGE_REVISION=""
LABEL org.opencontainers.image.title="flowable-worker-operator" \
      org.opencontainers.image.description="Kubernetes operator that scales Flowable external workers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${IMAGE_REVISION}" \
      org.opencontainers.image.source="${IMAGE_SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=operator-venv /opt/venv /opt/venv
COPY LICENSE /usr/share/doc/flowable-worker-operator/LICENSE
# Not named "operator": Debian already has a group of that name, and useradd would refuse.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin flowable-operator
USER 10001
# /metrics and /healthz (--metrics-port)
EXPOSE 8080
ENTRYPOINT ["flowable-worker-operator"]
