"""The inference API in-process, through FastAPI's TestClient: the app of `create_app` with
`watch=False` (no MLflow, no watcher) serving a LightGBM pipeline fitted here on real rows,
through the same compile, check and swap as a registry version.

What needs a real process or a registry (hot swap by alias, outage, workers, SIGTERM, the
logs, schemathesis) is in tests/integration/test_serve.py.
"""

from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from covertype import schema
from covertype.serve import create_app
from covertype.serve.heap import freeze_heap
from covertype.serve.onnx_trees import ONNX_TOLERANCE
from covertype.serve.predictors import records_frame
from covertype.serve.records import EXAMPLE
from covertype.settings import MissingSecret, Settings, SettingsError, get_settings
from covertype.train import fit_pipeline
from tests.support.data import records_of

# Small models: the unit layer must stay fast (40 trees of 31 leaves cost 2.6 s CPU here).
LIGHTGBM = {"n_estimators": 20, "num_leaves": 15, "learning_rate": 0.1, "num_threads": 1}
TRAIN_ROWS = slice(0, 2000)
CHECK_ROWS = slice(20000, 21000)  # never trained on
MAX_BATCH = 1000
TAGS = {
    "run_id": "run-1",
    "family": "lightgbm",
    "holdout_accuracy": "0.81",
    "holdout_macro_f1": "0.62",
    "trained_rows": "2000",
    "trained_batches": "1,2",
    "trained_at": "2026-12-01T10:00:00+00:00",
    "gate.decision": "promoted: first champion",
}


# The unit API runs with keys on, as compose and k8s do; each client sends one.
API_KEYS = ("unit-key-one-0123456789", "unit-key-two-0123456789")
METRICS_KEY = "unit-scraper-key-0123456789"
KEYED = {"X-API-Key": API_KEYS[1]}
SCRAPER = {"Authorization": f"Bearer {METRICS_KEY}"}


def settings_for(tmp_path, max_batch: int = MAX_BATCH) -> Settings:
    return Settings.from_env(
        {
            "COVERTYPE_AUTH": "on",
            "COVERTYPE_API_KEYS": ",".join(API_KEYS),
            "COVERTYPE_METRICS_KEY": METRICS_KEY,
            "COVERTYPE_HOME": tmp_path,
            "COVERTYPE_MODEL_NAME": "covertype-unit",
            "COVERTYPE_MODEL_ALIAS": "champion",
            "COVERTYPE_SERVE_WATCH_SECONDS": 0.3,
            "COVERTYPE_SERVE_MAX_BATCH": max_batch,
        }
    )


def fit(real_frame, family: str, params: dict):
    """A pipeline of `family` fitted on the training rows, typed as the training types them."""
    rows = real_frame.iloc[TRAIN_ROWS]
    frame = records_frame(records_of(rows))
    return fit_pipeline(family, params, frame, rows[schema.LABEL].to_numpy(), seed=0)


@pytest.fixture(scope="module")
def pipeline(real_frame):
    return fit(real_frame, "lightgbm", LIGHTGBM)


@pytest.fixture(scope="module")
def check_records(real_frame) -> list[dict]:
    return records_of(real_frame.iloc[CHECK_ROWS])


def expected(pipeline, records: list[dict]) -> list[int]:
    return [int(v) for v in pipeline.predict(records_frame(records))]


@pytest.fixture(scope="module")
def api(pipeline, tmp_path_factory):
    """The app serving `pipeline` as version 3; its lifespan runs (and asks no registry)."""
    app = create_app(settings_for(tmp_path_factory.mktemp("api")), watch=False)
    app.state.holder.serve_pipeline(pipeline, "3", tags=TAGS)
    with TestClient(app, headers=KEYED) as client:
        yield client


@pytest.fixture
def empty_api(tmp_path):
    """An app with no model at all."""
    with TestClient(create_app(settings_for(tmp_path), watch=False), headers=KEYED) as client:
        yield client


def samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    text = TestClient(client.app).get("/metrics", headers=SCRAPER).text  # without the API key
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# ---------------------------------------------------------------- answers


def test_predict_answers_the_pipelines_class_its_name_and_the_version(api, pipeline, check_records):
    answer = api.post("/predict", json=EXAMPLE)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    label = expected(pipeline, [EXAMPLE])[0]
    body = answer.json()
    probabilities = body.pop("probabilities")
    assert body == {
        "cover_type": label,
        "cover_type_name": schema.COVER_TYPE_NAMES[label],
        "model_version": "3",
    }
    assert list(probabilities) == list(schema.COVER_TYPE_NAMES)
    truth = pipeline.predict_proba(records_frame([EXAMPLE]))[0]
    assert np.abs(np.array(list(probabilities.values())) - truth).max() <= ONNX_TOLERANCE
    assert max(probabilities, key=probabilities.get) == body["cover_type_name"]
    rows = check_records[:100]
    answers = [api.post("/predict", json=row).json() for row in rows]
    assert [a["cover_type"] for a in answers] == expected(pipeline, rows)
    assert len({a["cover_type"] for a in answers}) >= 3  # real rows, several classes
    assert {a["model_version"] for a in answers} == {"3"}


def test_ready_and_model_describe_the_model_in_memory(api):
    assert api.get("/health").json() == {"status": "ok"}
    ready = api.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["detail"] is None
    assert body["model"] | {"loaded_at": None} == {
        "name": "covertype-unit",
        "version": "3",
        "alias": "champion",
        "loaded_at": None,
        "source": "memory",
    }
    assert body["registry"]["reachable"] is None  # never asked

    info = api.get("/model").json()
    assert info["run_id"] == "run-1" and info["family"] == "lightgbm"
    assert info["metrics"] == {"holdout_accuracy": 0.81, "holdout_macro_f1": 0.62}
    assert (info["trained_rows"], info["trained_batches"]) == (2000, "1,2")
    assert info["trained_at"] == TAGS["trained_at"]
    assert info["gate_decision"] == "promoted: first champion"
    assert info["reproducibility"] is None  # no manifest among its tags
    assert info["serving_cost"] is None  # no cost among its tags either
    assert info["predictor"] == "onnx" and info["predictor_note"] is None
    assert info["fast_path_note"] is None
    assert info["registry"] == body["registry"]
    assert info["challenger"] is None  # none served beside it


def test_openapi_documents_every_route_with_a_real_example_record(api, real_frame):
    document = api.get("/openapi.json").json()
    paths = {"/predict", "/predict/batch", "/predict/explain", "/health", "/ready", "/model"}
    assert paths | {"/metrics"} <= set(document["paths"])
    prediction = document["components"]["schemas"]["Prediction"]["properties"]
    probabilities = prediction["probabilities"]
    assert {"type": "object", "additionalProperties": {"type": "number"}} in probabilities["anyOf"]
    assert set(probabilities["examples"][0]) == set(schema.COVER_TYPE_NAMES)
    explain = document["paths"]["/predict/explain"]["post"]
    assert {"200", "422", "501", "503"} <= set(explain["responses"])
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    example = body["examples"]["first real row"]["value"]
    assert example == records_of(real_frame.iloc[:1])[0]  # the first row of the real data
    assert real_frame[schema.LABEL].iloc[0] == 0
    record = document["components"]["schemas"]["Record"]
    assert record["properties"]["Elevation"]["minimum"] == 1000
    assert set(record["properties"]["Wilderness_Area"]["enum"]) == set(schema.WILDERNESS_AREAS)
    batch = document["paths"]["/predict/batch"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["maxItems"] == MAX_BATCH
    assert {"413", "422", "503"} <= set(batch["responses"])
    assert api.get("/docs").status_code == 200
    assert api.post("/predict", json=example).status_code == 200


def test_each_app_documents_its_own_batch_limit(tmp_path):
    apps = [create_app(settings_for(tmp_path, max_batch), watch=False) for max_batch in (7, 9)]
    documents = [app.openapi() for app in apps]
    limits = [
        d["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]["maxItems"]
        for d in documents
    ]
    assert limits == [7, 9]


# ---------------------------------------------------------------- validation


def test_bad_records_get_422_naming_each_bad_field_and_what_is_allowed(api):
    bad = {**EXAMPLE, "Elevation": 999, "Soil_Type": "C9999", "Wilderness_Area": "Mordor"}
    del bad["Slope"]
    bad["Colour"] = "green"
    with pytest.raises(schema.RecordError) as expected:
        schema.validate_record(bad)

    answer = api.post("/predict", json=bad)
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [d["msg"] for d in detail] == [str(e) for e in expected.value.errors]
    assert {d["field"] for d in detail} == {
        "Elevation", "Slope", "Wilderness_Area", "Soil_Type", "Colour"
    }  # fmt: skip
    elevation = next(d for d in detail if d["field"] == "Elevation")
    assert elevation["loc"] == ["body", "Elevation"] and elevation["input"] == 999
    assert elevation["msg"] == (
        "Elevation: 999 is out of range; allowed: a whole number of metres from 1000 to 4500"
    )
    wilderness = next(d for d in detail if d["field"] == "Wilderness_Area")
    assert "Rawah, Neota, Commanche, Cache" in wilderness["allowed"]
    assert next(d for d in detail if d["field"] == "Slope")["problem"] == "is missing"
    assert next(d for d in detail if d["field"] == "Colour")["problem"] == "is not a field"


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"[1, 2]", "application/json", "a record must be a JSON object with the 12 features"),
        (b"null", "application/json", "the body is empty; send a record: a JSON object"),
        (b'{"Elevation": 3156,', "application/json", "JSON decode error"),
        (json.dumps(EXAMPLE).encode(), "text/plain", "not sent as Content-Type: application/json"),
        (b"", "application/json", "the body is empty; send a record: a JSON object"),
    ],
)
def test_a_body_that_is_not_a_record_gets_422_saying_what_a_record_is(
    api, body, content_type, says
):
    answer = api.post("/predict", content=body, headers={"content-type": content_type})
    assert answer.status_code == 422
    assert says in answer.json()["detail"][0]["msg"]


def test_a_nan_or_infinity_gets_422_with_the_value_as_null(api):
    # Python's JSON parser reads NaN and Infinity; the answer must still be valid JSON.
    body = json.dumps({**EXAMPLE, "Elevation": float("nan"), "Slope": float("inf")})
    answer = api.post("/predict", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    detail = {d["field"]: d for d in answer.json()["detail"]}
    assert set(detail) == {"Elevation", "Slope"}
    assert detail["Elevation"]["input"] is None and detail["Slope"]["input"] is None
    assert detail["Elevation"]["msg"].startswith("Elevation: nan is not a whole number")
    batch = api.post(
        "/predict/batch", content=f"[{body}]", headers={"content-type": "application/json"}
    )
    assert batch.status_code == 422
    assert [d["loc"] for d in batch.json()["detail"]] == [
        ["body", 0, "Elevation"],
        ["body", 0, "Slope"],
    ]


def test_accepted_spellings_are_normalised_as_ingest_does(api):
    canonical = api.post("/predict", json=EXAMPLE).json()
    variants = [
        {"Wilderness_Area": "Comanche"},
        {"Wilderness_Area": "commanche peak", "Soil_Type": "7756"},
        {"Soil_Type": "32"},  # UCI soil type 32 is ELU 7756
        {"Soil_Type": "c7756", "Elevation": "3156", "Aspect": 287.0},
    ]
    for change in variants:
        answer = api.post("/predict", json=EXAMPLE | change)
        assert answer.status_code == 200, (change, answer.text)
        assert answer.json() == canonical


# ---------------------------------------------------------------- batches


def test_batch_answers_every_record_in_order_and_names_bad_ones_by_position(
    api, pipeline, check_records
):
    rows = check_records[:MAX_BATCH]
    answer = api.post("/predict/batch", json=rows)
    assert answer.status_code == 200
    body = answer.json()
    assert [a["cover_type"] for a in body] == expected(pipeline, rows)
    assert {a["model_version"] for a in body} == {"3"}
    proba = np.array([list(a["probabilities"].values()) for a in body])
    truth = pipeline.predict_proba(records_frame(rows))
    assert np.abs(proba - truth).max() <= ONNX_TOLERANCE
    assert all(a["cover_type_name"] == schema.COVER_TYPE_NAMES[a["cover_type"]] for a in body)
    small = rows[:10]  # under BATCH_IN_THREAD: predicted on the event loop
    assert [a["cover_type"] for a in api.post("/predict/batch", json=small).json()] == expected(
        pipeline, small
    )
    assert api.post("/predict/batch", json=[]).json() == []

    rows = [EXAMPLE, {**EXAMPLE, "Aspect": 361}, EXAMPLE, {**EXAMPLE, "Soil_Type": "C1"}]
    invalid = api.post("/predict/batch", json=rows)
    assert invalid.status_code == 422
    assert [(d["loc"], d["problem"]) for d in invalid.json()["detail"]] == [
        (["body", 1, "Aspect"], "is out of range"),
        (["body", 3, "Soil_Type"], "is not a known soil type"),
    ]
    not_a_list = api.post("/predict/batch", json=EXAMPLE)
    assert not_a_list.status_code == 422
    assert "a batch must be a JSON list of records" in not_a_list.json()["detail"][0]["msg"]


def test_a_batch_over_the_maximum_gets_413(api):
    answer = api.post("/predict/batch", json=[EXAMPLE] * (MAX_BATCH + 1))
    assert answer.status_code == 413
    assert answer.json()["detail"] == (
        f"a batch of {MAX_BATCH + 1} records is over the maximum of {MAX_BATCH} "
        "(COVERTYPE_SERVE_MAX_BATCH); split it"
    )
    huge = b"[" + b" " * (MAX_BATCH * 2048 + 1) + b"]"  # refused before it is read
    answer = api.post("/predict/batch", content=huge, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "request body over" in answer.json()["detail"]


# ---------------------------------------------------------------- no model, a new model


def test_without_a_model_the_api_says_503_and_still_checks_records(empty_api):
    for answer in (
        empty_api.post("/predict", json=EXAMPLE),
        empty_api.post("/predict/batch", json=[EXAMPLE]),
        empty_api.get("/model"),
    ):
        assert answer.status_code == 503
        assert answer.json()["detail"] == (
            "no model loaded yet for models:/covertype-unit@champion: no model was given and "
            "the registry is not watched; the API checks again every 0.3 s"
        )
        assert answer.headers["retry-after"] == "1"
    ready = empty_api.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False and ready.json()["model"] is None
    assert ready.json()["detail"].startswith("no model loaded yet")
    assert empty_api.get("/health").status_code == 200
    assert empty_api.post("/predict", json={**EXAMPLE, "Slope": 99}).status_code == 422
    served = {"model_name": "covertype-unit", "alias": "champion"}
    assert samples(empty_api)[("covertype_model_version", frozenset(served.items()))] == 0


def test_a_new_pipeline_is_swapped_in_and_every_answer_names_it(
    empty_api, pipeline, real_frame, check_records
):
    holder = empty_api.app.state.holder
    holder.serve_pipeline(pipeline, "7")
    rows = check_records[:300]
    before = empty_api.post("/predict/batch", json=rows).json()
    assert {a["model_version"] for a in before} == {"7"}

    trees = {"n_estimators": 10, "max_features": 0.5, "min_samples_leaf": 1, "max_samples": 0.5}
    other = fit(real_frame, "extra_trees", trees)
    assert expected(other, rows) != expected(pipeline, rows)  # the swap can be seen
    holder.serve_pipeline(other, "8")
    answers = empty_api.post("/predict/batch", json=rows).json()
    assert {a["model_version"] for a in answers} == {"8"}
    assert [a["cover_type"] for a in answers] == expected(other, rows)
    assert empty_api.get("/ready").json()["model"]["version"] == "8"
    assert empty_api.get("/model").json()["predictor"] == "fast"
    assert all(sum(a["probabilities"].values()) == pytest.approx(1) for a in answers)
    after = samples(empty_api)
    served = {"model_name": "covertype-unit", "alias": "champion"}
    assert after[("covertype_model_version", frozenset(served.items()))] == 8
    assert after[("covertype_model_swaps_total", frozenset())] == 1
    loads = {"source": "memory", "outcome": "ok"}
    assert after[("covertype_model_loads_total", frozenset(loads.items()))] == 2


def test_a_load_freezes_the_heap_and_frees_the_swapped_out_models_cycles(
    empty_api, pipeline, real_frame
):
    class Cycle:  # garbage only the cyclic collector frees
        pass

    holder = empty_api.app.state.holder
    holder.serve_pipeline(pipeline, "7")
    assert gc.get_freeze_count() > 1000  # the model and the libraries: never scanned again
    garbage = Cycle()
    garbage.me = garbage
    gone = weakref.ref(garbage)
    holder.current.tags["cycle"] = garbage  # reachable only from the served model
    del garbage
    freeze_heap()  # frozen while it serves, as after a load
    gc.collect()
    assert gone() is not None  # the collector does not see it
    trees = {"n_estimators": 5, "max_features": 0.5, "min_samples_leaf": 1, "max_samples": 0.5}
    holder.serve_pipeline(fit(real_frame, "extra_trees", trees), "8")
    assert gone() is None  # the swap's collection freed it
    assert empty_api.post("/predict", json=EXAMPLE).json()["model_version"] == "8"


# ---------------------------------------------------------------- explanations


def test_explain_names_the_fields_that_weighed_most_summed_to_the_input_fields(api, pipeline):
    answer = api.post("/predict/explain?top=12", json=EXAMPLE)
    assert answer.status_code == 200
    body = answer.json()
    label = expected(pipeline, [EXAMPLE])[0]
    assert body["cover_type"] == label and body["explained_class"] == schema.COVER_TYPE_NAMES[label]
    contributions = body["contributions"]
    assert sorted(c["field"] for c in contributions) == sorted(schema.FEATURES)
    sizes = [abs(c["contribution"]) for c in contributions]
    assert sizes == sorted(sizes, reverse=True)
    by_field = {c["field"]: c for c in contributions}
    assert by_field["Elevation"]["value"] == EXAMPLE["Elevation"]
    first = contributions[0]
    assert first["text"] == f"{first['field']} {first['contribution']:+.2f}"
    # SHAP values add up to the class's raw score: the fields lose nothing in the summing.
    raw = pipeline[-1].booster_.predict(pipeline[:2].transform(records_frame([EXAMPLE])),
                                        raw_score=True)[0][label]  # fmt: skip
    assert body["base_value"] + sum(c["contribution"] for c in contributions) == pytest.approx(raw)

    top = api.post("/predict/explain", json=EXAMPLE).json()["contributions"]
    assert [c["field"] for c in top] == [c["field"] for c in contributions[:5]]
    assert api.post("/predict/explain?top=13", json=EXAMPLE).status_code == 422
    bad = api.post("/predict/explain", json={**EXAMPLE, "Slope": 91})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "Slope"


def test_explain_answers_501_naming_a_family_without_contributions(empty_api, real_frame):
    trees = {"n_estimators": 5, "max_features": 0.5, "min_samples_leaf": 1, "max_samples": 0.5}
    holder = empty_api.app.state.holder
    holder.serve_pipeline(
        fit(real_frame, "extra_trees", trees), "9", tags={"family": "extra_trees"}
    )
    answer = empty_api.post("/predict/explain", json=EXAMPLE)
    assert answer.status_code == 501
    assert answer.json()["detail"] == (
        "explanations need per-feature contributions, which the family 'extra_trees' "
        "(ExtraTreesClassifier) does not give; lightgbm models have them"
    )
    assert empty_api.post("/predict", json=EXAMPLE).status_code == 200


# ---------------------------------------------------------------- API keys


def test_without_a_key_predict_is_401_saying_how_to_send_one(api, check_records):
    anonymous = TestClient(api.app)
    for headers in ({}, {"X-API-Key": ""}, {"Authorization": "Basic dXNlcjpwdw=="}):
        answer = anonymous.post("/predict", json=check_records[0], headers=headers)
        assert answer.status_code == 401, headers
        assert "X-API-Key" in answer.json()["detail"] and "Bearer" in answer.json()["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")
    wrong = anonymous.post("/predict", json=check_records[0], headers={"X-API-Key": "x" * 20})
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "invalid API key")
    # Unknown paths too: a 401 tells nothing about what exists.
    assert anonymous.get("/admin").status_code == 401


def test_each_key_opens_the_api_by_either_header(api, check_records):
    anonymous = TestClient(api.app)
    for key in API_KEYS:
        for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
            assert anonymous.post("/predict", json=check_records[0], headers=headers).is_success
    assert anonymous.post("/predict/batch", json=check_records[:3], headers=KEYED).is_success


def test_probes_and_docs_are_open_metrics_only_to_the_scrapers_key(api):
    anonymous = TestClient(api.app)
    for path in ("/health", "/ready", "/docs", "/openapi.json"):
        assert anonymous.get(path).status_code == 200, path
    assert anonymous.get("/model").status_code == 401
    assert anonymous.get("/metrics").status_code == 401
    refused = anonymous.get("/metrics", headers=KEYED)  # an API key cannot read the traffic
    assert refused.status_code == 401 and "COVERTYPE_METRICS_KEY" in refused.json()["detail"]
    assert anonymous.get("/metrics", headers=SCRAPER).status_code == 200
    # ... and the scraper's key cannot predict.
    assert anonymous.get("/model", headers={"X-API-Key": METRICS_KEY}).status_code == 401


def test_the_401s_are_counted_by_endpoint(api):
    TestClient(api.app).get("/model")
    counted = samples(api)
    key = ("covertype_requests_total", frozenset({("endpoint", "/model"), ("method", "GET"),
                                                  ("status", "401")}))  # fmt: skip
    assert counted[key] >= 1


def test_the_schema_offers_both_ways_to_send_a_key(api):
    document = api.get("/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    assert document["paths"]["/predict"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert "401" in document["paths"]["/predict"]["post"]["responses"]
    assert document["paths"]["/health"]["get"]["security"] == []


def test_auth_on_without_keys_refuses_to_build_the_api(tmp_path):
    settings = Settings.from_env({"COVERTYPE_AUTH": "on", "COVERTYPE_HOME": tmp_path})
    with pytest.raises(MissingSecret, match="COVERTYPE_API_KEYS is not set"):
        create_app(settings, watch=False)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("", "key 1 of 1 is empty"),
        ("short", "key 1 of 1 is too short (5 characters): at least 16"),
        ("a-good-key-0123456789,x", "key 2 of 2 is too short (1 characters)"),
        ("a-good-key-0123456789,,", "key 2 of 3 is empty"),
        ("a-good-key 0123456789", "may not contain spaces"),
    ],
)
def test_bad_keys_are_refused_naming_the_variable_never_the_key(keys, message, monkeypatch):
    monkeypatch.setenv("COVERTYPE_API_KEYS", keys)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as error:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "COVERTYPE_API_KEYS=<hidden>" in str(error.value) and message in str(error.value)
    assert "0123456789" not in str(error.value)
