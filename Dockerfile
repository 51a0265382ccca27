# syntax=docker/dockerfile:1
# The project image: every covertype service of docker-compose.yaml, docker-compose-locust.yaml
# and deploy/k8s runs it with its own command (`covertype source|serve|ui|mlflow|ingest|train|
# loadtest`). Airflow has an image of its own (deploy/airflow.Dockerfile).
#
#   docker build -t covertype:latest .
#
# Dependencies come from requirements-runtime.lock: requirements.lock's pins, without the
# airflow and dev extras, plus boto3 for the MLflow server's S3 artifact store
# (deploy/requirements-runtime.in; tests/unit/test_dockerfiles.py checks the pins agree).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: a virtualenv with the locked dependencies and the package ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The lock first: this layer stays cached until the lock changes.
COPY requirements-runtime.lock ./
RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/pip pip install --no-deps .

# ---- runtime: the virtualenv on a clean base, run as a non-root user ------------------------
FROM ${PYTHON_IMAGE} AS runtime
# LightGBM needs the OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 covertype \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin covertype \
    && mkdir -p /var/lib/covertype \
    && chown covertype: /var/lib/covertype
COPY --from=build /opt/venv /opt/venv
# COVERTYPE_HOME: SQLite state, dataset cache, model cache (a volume where it must survive).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    COVERTYPE_HOME=/var/lib/covertype
# By number: Kubernetes' runAsNonRoot can only check a numeric user (deploy/k8s runs 10001).
USER 10001:10001
WORKDIR /home/covertype
# source 8087, MLflow 8084, inference API 8085, UI 8086, Locust 8089
EXPOSE 8084 8085 8086 8087 8089
CMD ["covertype", "--help"]
