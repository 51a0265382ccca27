"""The inference API's keys on a real `covertype serve` (2 workers, as compose runs it)."""

from __future__ import annotations

import httpx
import pytest

from covertype.serve.records import EXAMPLE
from tests.support.environment import run_cli
from tests.support.servers import ServerProcess, free_port

KEYS = ("first-client-key-0123456789", "second-client-key-0123456789")
SCRAPER = "the-scrapers-own-key-0123456789"


@pytest.fixture(scope="module")
def keyed_api(champion, mlflow_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keyed-api")
    server = ServerProcess(
        ["serve", "--port", str(free_port())],
        env={
            "COVERTYPE_AUTH": "on",
            "COVERTYPE_API_KEYS": ",".join(KEYS),
            "COVERTYPE_METRICS_KEY": SCRAPER,
            "COVERTYPE_SERVE_WORKERS": "2",
            "COVERTYPE_HOME": str(tmp / "home"),
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "COVERTYPE_MODEL_NAME": champion["model_name"],
        },
        cwd=tmp,
        log_path=tmp / "serve.log",
    ).start(ready_path="/ready", timeout=180)
    yield server
    server.stop()


def test_predict_needs_a_key_and_says_how_to_send_one(keyed_api):
    answer = httpx.post(f"{keyed_api.url}/predict", json=EXAMPLE)
    assert answer.status_code == 401
    assert answer.json()["detail"] == (
        "missing API key: send it as the header X-API-Key: <key> or Authorization: Bearer <key>"
    )
    wrong = httpx.post(f"{keyed_api.url}/predict", json=EXAMPLE, headers={"X-API-Key": "x" * 24})
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "invalid API key")


def test_every_key_predicts_through_either_header_on_every_worker(keyed_api, champion):
    # A new connection each: the kernel spreads them over both workers' shared socket.
    for i in range(40):
        key = KEYS[i % 2]
        headers = {"X-API-Key": key} if i % 4 < 2 else {"Authorization": f"Bearer {key}"}
        answer = httpx.post(f"{keyed_api.url}/predict", json=EXAMPLE, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == champion["version"]


def test_probes_stay_open_and_metrics_open_only_to_the_scraper(keyed_api):
    assert httpx.get(f"{keyed_api.url}/health").status_code == 200
    assert httpx.get(f"{keyed_api.url}/ready").status_code == 200
    metrics = f"{keyed_api.url}/metrics"
    assert httpx.get(metrics).status_code == 401
    assert httpx.get(metrics, headers={"X-API-Key": KEYS[0]}).status_code == 401
    scraped = httpx.get(metrics, headers={"Authorization": f"Bearer {SCRAPER}"})
    assert scraped.status_code == 200
    assert 'status="401"' in scraped.text  # the refusals above are counted
    refused = httpx.post(f"{keyed_api.url}/predict", json=EXAMPLE, headers={"X-API-Key": SCRAPER})
    assert refused.status_code == 401  # the scraper's key does not predict


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "covertype serve: COVERTYPE_API_KEYS is not set: with COVERTYPE_AUTH=on"),
        ({"COVERTYPE_API_KEYS": "short"}, "COVERTYPE_API_KEYS=<hidden>: key 1 of 1 is too short"),
        ({"COVERTYPE_API_KEYS": ""}, "COVERTYPE_API_KEYS=<hidden>: key 1 of 1 is empty"),
    ],
)
def test_serve_with_logins_on_refuses_to_start_without_good_keys(env, message, tmp_path):
    done = run_cli(
        ["serve", "--port", str(free_port())],
        {"COVERTYPE_AUTH": "on", "COVERTYPE_HOME": str(tmp_path), **env},
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
