"""The app `mlflow server --app-name covertype-auth` runs in each worker (an `mlflow.app`
entry point in pyproject.toml): MLflow's basic-auth app plus one route rule."""

from __future__ import annotations

import os

# MLflow's basic-auth app plus one route rule (create_auth_app), registered in pyproject.toml
# as an `mlflow.app` entry point: `mlflow server --app-name covertype-auth`.
AUTH_APP = "covertype-auth"


def create_auth_app(app=None):
    """MLflow's basic-auth app (`mlflow.server.auth:create_app`), with Prometheus' /metrics
    open to the metrics user and admins. MLflow's auth answers 403 to every signed-in
    non-admin on a route it has no rule for (MLFLOW_BASIC_AUTH_FAIL_CLOSED, on by default),
    and /metrics (--expose-prometheus) has none; turning fail-closed off would open every
    such route to every user, this opens one route to one user. Runs in each worker."""
    from mlflow.server import app as flask_app
    from mlflow.server import auth
    from werkzeug.datastructures import Authorization

    metrics_user = os.environ.get("COVERTYPE_MLFLOW_METRICS_USER", "covertype-metrics")

    def can_scrape() -> bool:
        # Validators run once the request is signed in; a Response (a 401) is no user at all.
        signed_in = auth.authenticate_request()
        return isinstance(signed_in, Authorization) and signed_in.username == metrics_user

    auth.BEFORE_REQUEST_VALIDATORS[("/metrics", "GET")] = can_scrape
    return auth.create_app(app or flask_app)
