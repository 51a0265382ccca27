# syntax=docker/dockerfile:1
# The official Airflow image extended with the covertype package: every Airflow service of
# docker-compose.yaml (`covertype airflow <command>`) and of the Helm chart
# (deploy/k8s/airflow-values.yaml). The DAGs ship inside the package (covertype/dags).
#
#   docker build -f deploy/airflow.Dockerfile -t covertype-airflow:latest .
#
# The image keeps Airflow, its providers (celery, postgres, ...) and its virtualenv
# (/home/airflow/.local). The package's dependencies are the pins of requirements-runtime.lock,
# installed together with the image's own apache-airflow so pip cannot move Airflow.
FROM apache/airflow:3.3.2-python3.11

# LightGBM (training tasks) needs the OpenMP runtime.
USER 0
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
# The image's user airflow (50000, group 0), by number: Kubernetes' runAsNonRoot can only
# check a numeric user.
USER 50000:0

COPY --chown=airflow:0 requirements-runtime.lock /tmp/covertype/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/covertype/requirements-runtime.lock
COPY --chown=airflow:0 pyproject.toml README.md /tmp/covertype/
COPY --chown=airflow:0 src /tmp/covertype/src
RUN pip install --no-cache-dir --no-deps /tmp/covertype && rm -rf /tmp/covertype

# covertype's state folder; `covertype airflow` makes $COVERTYPE_HOME/airflow the AIRFLOW_HOME.
# Created here, owned by airflow, so a named volume mounted on its logs starts writable.
ENV COVERTYPE_HOME=/opt/airflow/covertype
RUN mkdir -p /opt/airflow/covertype/airflow/logs
