# syntax=docker/dockerfile:1
#
# Targets:
#   operator (default)  runwhen-operator run
#   emulator            the RunWhen API emulator, for tests and demos
#
#   docker build -t runwhen-operator:dev .
#   docker build --target emulator -t runwhen-emulator:dev .
#
# The runtime images hold no compilers, run as the numeric non-root user 65532 and write nothing
# outside /tmp, so they run with a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------------------------------------------
# build: wheels for the package and every dependency, then a virtual environment installed from them
# without network access.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && python -m venv /opt/runwhen \
 && /opt/runwhen/bin/pip install --no-cache-dir --no-index --find-links=/wheels /wheels/runwhen_operator-*.whl \
 && /opt/runwhen/bin/pip uninstall --yes pip

# ---------------------------------------------------------------------------------------------------
# runtime: the shared base of both images.
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="runwhen-operator" \
      org.opencontainers.image.description="Kubernetes operator for RunWhen Platform workspaces, workflows and personas" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/runwhen/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
COPY --from=build /opt/runwhen /opt/runwhen
WORKDIR /tmp
USER 65532:65532

# ---------------------------------------------------------------------------------------------------
FROM runtime AS emulator
EXPOSE 8080
ENTRYPOINT ["runwhen-emulator", "--host", "0.0.0.0", "--port", "8080", "--allow-remote-control"]

# ---------------------------------------------------------------------------------------------------
# operator: the default target (last stage).
FROM runtime AS operator
EXPOSE 8081 9090
ENTRYPOINT ["runwhen-operator", "run"]
