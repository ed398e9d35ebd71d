# syntax=docker/dockerfile:1
# Images of this repository. Targets:
#   worker    the `flowable-worker` runtime: the distribution WITHOUT the operator extra, so the
#             image carries no kopf or kubernetes (tests/packaging proves the same install works)
# The operator target joins when the operator exists. No Docker engine runs where the tests run:
# `make lint` checks this file with hadolint, and tests/packaging runs the same pip install.

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
