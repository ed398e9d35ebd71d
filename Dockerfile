# syntax=docker/dockerfile:1
# Images of this repository. Targets:
#   worker    the `flowable-worker` runtime: the distribution WITHOUT the operator extra, so the
#             image carries no kopf or kubernetes (tests/packaging proves the same install works)
#   operator  the `flowable-worker-operator` (kopf): the distribution WITH the operator extra
#             (tests/packaging/test_operator_install.py runs the same install)
# No Docker engine runs where the tests run: `make lint` checks this file with hadolint, and
# tests/packaging runs the same pip install.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker/ worker/
COPY operator/ operator/

FROM base AS worker
RUN pip install --no-cache-dir /src \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin worker
WORKDIR /
USER 10001
# /metrics, /healthz, /readyz
EXPOSE 9464
ENTRYPOINT ["flowable-worker"]

FROM base AS operator
# Not named "operator": Debian already has a group of that name, and useradd would refuse.
RUN pip install --no-cache-dir "/src[operator]" \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin flowable-operator
WORKDIR /
USER 10001
# /metrics and /healthz (--metrics-port)
EXPOSE 8080
ENTRYPOINT ["flowable-worker-operator"]
