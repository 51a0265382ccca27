"""What the running stack's services answer: health, the champion, a served prediction, the
rows collected. Plain reads over HTTP and the data DB, each safe to call every couple of
seconds: `covertype up`'s watcher and `covertype status` call them, signed in as the stack."""

from __future__ import annotations

import base64
import contextlib
import time

import httpx

from covertype.settings import Settings
from covertype.stack.services import Service


class StackLogins(httpx.Auth):
    """The stack's logins on each request: MLflow's basic auth (the stack's own user) on
    the tracking server's URLs, the API key on the inference API's."""

    def __init__(self, settings: Settings):
        self.mlflow = settings.mlflow.tracking_uri.rstrip("/")
        self.api = settings.serve.url.rstrip("/")
        self.basic = None
        if settings.auth.mlflow_tracking_username and settings.auth.mlflow_tracking_password:
            pair = f"{settings.auth.mlflow_tracking_username}:"
            pair += settings.auth.mlflow_tracking_password.get_secret_value()
            self.basic = "Basic " + base64.b64encode(pair.encode()).decode()
        self.api_headers = settings.auth.api_headers

    def auth_flow(self, request: httpx.Request):
        url = str(request.url)
        if self.basic and url.startswith(self.mlflow):
            request.headers["Authorization"] = self.basic
        elif url.startswith(self.api):
            request.headers.update(self.api_headers)
        yield request


def client(settings: Settings, timeout: float = 5) -> httpx.Client:
    """An HTTP client that signs in to MLflow and the inference API as the stack does."""
    return httpx.Client(timeout=timeout, auth=StackLogins(settings))


class Health:
    """One round of health checks: each URL asked once (Airflow's four components share the
    api-server's monitor answer)."""

    def __init__(self, settings: Settings, client: httpx.Client):
        self.settings, self.client = settings, client
        self.answers: dict[str, httpx.Response | None] = {}

    def _get(self, url: str) -> httpx.Response | None:
        if url not in self.answers:
            try:
                self.answers[url] = self.client.get(url)
            except httpx.HTTPError:
                self.answers[url] = None
        return self.answers[url]

    def healthy(self, service: Service) -> bool:
        answer = self._get(service.health_url(self.settings))
        if answer is None or answer.status_code != 200:
            return False
        if service.component is None:
            return True
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            return answer.json()[service.component]["status"] == "healthy"
        return False


def champion_version(settings: Settings, client: httpx.Client) -> str | None:
    answer = client.get(
        f"{settings.mlflow.tracking_uri}/api/2.0/mlflow/registered-models/alias",
        params={"name": settings.mlflow.model_name, "alias": settings.mlflow.model_alias},
    )
    if answer.status_code != 200:
        return None
    return answer.json()["model_version"]["version"]


def rows_by_batch(settings: Settings) -> dict[int, int]:
    from covertype import db

    try:
        return db.rows_by_batch(settings.data_db)
    except Exception:  # the data DB does not exist before the first collection
        return {}


def served_answer(settings: Settings, client: httpx.Client) -> tuple[dict, float] | None:
    """The API's answer to a real record and its milliseconds, or None while not ready."""
    from covertype.serve.records import EXAMPLE

    if client.get(settings.serve.url + "/ready").status_code != 200:
        return None
    started = time.perf_counter()
    answer = client.post(settings.serve.url + "/predict", json=EXAMPLE)
    answer.raise_for_status()
    return answer.json(), (time.perf_counter() - started) * 1000
