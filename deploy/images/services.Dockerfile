# syntax=docker/dockerfile:1.7
# One Dockerfile for the platform's services, a target per service:
#   docker build -f deploy/images/services.Dockerfile --target api -t woostore-api .
# Each image holds only its service's dependencies (uv sync --package) and runs as non-root.
# Not built on the project's CI machines (they have no Docker engine): make check lints it
# (hadolint); .github/workflows/images.yml builds it, runs it on kind and publishes it.

ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS build
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY shared shared
COPY cluster cluster
COPY services services
COPY devstack devstack

FROM build AS build-api
RUN uv sync --frozen --no-dev --no-editable --package woostore-api
# The services but the API run -OO (PYTHONOPTIMIZE=2, below): the bytecode it reads is
# compiled here, or each start would compile every module again.
FROM build AS build-provisioner
RUN uv sync --frozen --no-dev --no-editable --package woostore-provisioner \
    && .venv/bin/python -m compileall -qq -j 0 -o 2 .venv/lib
COPY deploy/tools/install_helm.py deploy/tools/install_helm.py
RUN python -m ensurepip && python deploy/tools/install_helm.py
FROM build AS build-reaper
RUN uv sync --frozen --no-dev --no-editable --package woostore-reaper \
    && .venv/bin/python -m compileall -qq -j 0 -o 2 .venv/lib
FROM build AS build-notifier
RUN uv sync --frozen --no-dev --no-editable --package woostore-notifier \
    && .venv/bin/python -m compileall -qq -j 0 -o 2 .venv/lib

FROM ${PYTHON} AS runtime
# /data: the simulated cluster's state (WOOSTORE_DATA_DIR), writable by the service user.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin woostore \
    && mkdir /data && chown woostore /data
WORKDIR /app
# Python as make run runs each service, a little smaller (woostore_devstack.launcher
# python_options; docs/benchmarks.md, the footprint of make run): no column ranges here, and
# -OO in the services that read no docstring.
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONNODEBUGRANGES=1 \
    WOOSTORE_LOG_FORMAT=json \
    WOOSTORE_API_HOST=0.0.0.0 WOOSTORE_NOTIFIER_HOST=0.0.0.0 WOOSTORE_OPS_HOST=0.0.0.0 \
    WOOSTORE_OPS_PORT=9000
USER 10001

FROM runtime AS api
COPY --from=build-api /app/.venv /app/.venv
# The store chart's version: a store from the warm pool is claimed only if it runs this one.
COPY helm/store/Chart.yaml /app/helm/store/Chart.yaml
ENV WOOSTORE_STORE_CHART=/app/helm/store
# 9000: /healthz, /readyz and /metrics, for probes and Prometheus, never for the public.
EXPOSE 8000 9000
CMD ["woostore-api"]

FROM runtime AS provisioner
ENV PYTHONOPTIMIZE=2
# restic keeps the stores' backups (docs/backups.md): Debian's package, as on the CI machines.
USER 0
RUN apt-get update \
    && apt-get install -y --no-install-recommends restic=0.14.* \
    && rm -rf /var/lib/apt/lists/*
USER 10001
COPY --from=build-provisioner /app/.venv /app/.venv
COPY --from=build-provisioner /app/.tools/bin/helm /usr/local/bin/helm
COPY helm/store /app/helm/store
ENV WOOSTORE_STORE_CHART=/app/helm/store WOOSTORE_DATA_DIR=/data
EXPOSE 9000
CMD ["woostore-provisioner"]

FROM runtime AS reaper
ENV PYTHONOPTIMIZE=2
COPY --from=build-reaper /app/.venv /app/.venv
# The store chart's version: pooled stores on another one are retired.
COPY helm/store/Chart.yaml /app/helm/store/Chart.yaml
ENV WOOSTORE_STORE_CHART=/app/helm/store
# Either cluster driver checks helm at start: the reaper removes orphaned stores through it.
COPY --from=build-provisioner /app/.tools/bin/helm /usr/local/bin/helm
EXPOSE 9000
CMD ["woostore-reaper"]

FROM runtime AS notifier
ENV PYTHONOPTIMIZE=2
COPY --from=build-notifier /app/.venv /app/.venv
EXPOSE 8001 9000
CMD ["woostore-notifier"]
