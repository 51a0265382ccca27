"""The artifact store (S3) stops while the API loads a new champion: the API keeps serving the
old one and retries until the store is back. A real S3 server (SeaweedFS), MLflow proxying
its artifacts from it, `covertype serve` as a real process, real HTTP."""

from __future__ import annotations

import time

import httpx
from mlflow import MlflowClient

from tests.support.data import fill_data_db, records_of, training_settings
from tests.support.load import PredictLoad
from tests.support.servers import (
    S3_BUCKET,
    S3_TEST_ENV,
    S3Server,
    ServerProcess,
    free_port,
    start_mlflow,
    wait_for,
)

TINY = {"n_estimators": 20, "num_leaves": 15, "num_threads": 1}


def test_store_down_during_a_swap_keeps_the_old_champion_and_retries(tmp_path, real_frame):
    from covertype.train import train

    s3 = S3Server(tmp_path / "s3").start()
    mlflow = start_mlflow(
        tmp_path,
        {
            "COVERTYPE_MLFLOW_ARTIFACTS_DESTINATION": f"s3://{S3_BUCKET}/",
            "MLFLOW_S3_ENDPOINT_URL": s3.url,
            **S3_TEST_ENV,
        },
    )
    api = None
    try:
        settings = training_settings(tmp_path, mlflow.url)
        fill_data_db(settings.data_db, real_frame, rows=2000, batches=2)
        first = train(settings, candidates=[("lightgbm", TINY)])
        assert any(key.endswith("MLmodel") for key in s3.objects()), "artifacts are in S3"
        api = ServerProcess(
            ["serve", "--port", str(free_port())],
            env={
                "COVERTYPE_HOME": str(tmp_path / "api"),
                "MLFLOW_TRACKING_URI": mlflow.url,
                "COVERTYPE_MODEL_NAME": settings.mlflow.model_name,
                "COVERTYPE_SERVE_WATCH_SECONDS": "1",
            },
            cwd=tmp_path,
            log_path=tmp_path / "serve.log",
        ).start(ready_path="/ready", timeout=120)

        # A second version, registered while the store runs; the alias moves once it is down.
        candidate = settings.with_env({"COVERTYPE_MODEL_ALIAS": "candidate"})
        fill_data_db(settings.data_db, real_frame, rows=2000, batches=2, start=2000)
        second = train(candidate, candidates=[("lightgbm", TINY | {"n_estimators": 25})])
        with PredictLoad(api.url, records_of(real_frame.sample(100, random_state=1))) as load:
            s3.kill()
            client = MlflowClient(mlflow.url, registry_uri=mlflow.url)
            client.set_registered_model_alias(
                settings.mlflow.model_name, "champion", second.version
            )
            failed = wait_for(
                lambda: _failed_loads(api.url),
                30,
                "a failed load",
            )
            time.sleep(3)  # several watcher intervals: it keeps trying
            assert _failed_loads(api.url) > failed
            ready = httpx.get(api.url + "/ready").json()
            assert ready["model"]["version"] == first.version
            assert ready["registry"]["champion_version"] == second.version

            s3.start()  # the same data folder: the store is back with every artifact
            wait_for(
                lambda: httpx.get(api.url + "/ready").json()["model"]["version"] == second.version,
                60,
                "the new champion loaded",
            )
        assert load.requests > 100 and load.failures() == []
        answered = {r[2] for r in load.results}
        assert answered == {"200"}
    finally:
        if api is not None:
            api.stop()
        mlflow.stop()
        s3.stop()


def _failed_loads(url: str) -> float:
    """covertype_model_loads_total with outcome="failed", from a real /metrics scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "covertype_model_loads_total" and sample.labels["outcome"] == "failed"
    )
