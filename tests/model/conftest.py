"""The model layer: one champion per session, trained by the platform's own training code on a
fixed sample of the real rows, and the inference API serving it.

The sample goes through ingest into a SQLite data DB and back (`data.read_rows`), is split by
row key (`data.split`), and a fixed random search (`search.sample_candidates`, the families
in turn) is fitted, chosen on the validation share and refit as `train()` does, only without
MLflow. One thread, seed 0: the same champion every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from threadpoolctl import threadpool_limits

from covertype.serve import create_app
from covertype.settings import Settings
from covertype.train import data, families, search
from covertype.train.data import Share
from tests.support.data import fill_data_db

SAMPLE_ROWS = 20_000  # 12.7k train, 3.3k validation, 4.0k holdout: a 26 s search on 2 cores
SEED = 0
CANDIDATES = 3  # one of each family: LightGBM, extra trees, the SVM
VERSION = "1"


@dataclass(frozen=True)
class Champion:
    pipeline: object
    family: str
    holdout: Share  # never trained on, never chosen by
    holdout_scores: dict[str, float]
    candidates: list[search.Candidate]
    rows: int  # in all three shares


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One BLAS/OpenMP thread, as the API's lifespan sets it (two shared cores)."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def real_covtype(real_frame) -> pd.DataFrame:
    """The real rows; a clear failure on the generated fallback, whose labels are random."""
    if not os.environ.get("COVERTYPE_SOURCE_DATA"):
        pytest.fail(
            "this model test needs the real covtype rows: set COVERTYPE_SOURCE_DATA to the UCI "
            "file (scripts/test.sh uses ../shared/data/covtype.csv.gz). Without it the tests "
            "run on generated rows whose labels are random, where no model can learn anything.",
            pytrace=False,
        )
    return real_frame


@pytest.fixture(scope="session")
def champion(real_frame, tmp_path_factory) -> Champion:
    folder = tmp_path_factory.mktemp("model-layer")
    settings = Settings.from_env(
        {"COVERTYPE_HOME": folder, "COVERTYPE_DATA_DB_URL": f"sqlite:///{folder / 'data.db'}"}
    )
    sample = real_frame.sample(SAMPLE_ROWS, random_state=SEED)
    fill_data_db(settings.data_db, sample, rows=SAMPLE_ROWS, batches=1)
    rows = data.split(data.read_rows(settings), settings)
    drawn = search.sample_candidates(CANDIDATES, families.FAMILIES, SEED)
    for candidate in drawn:
        search.fit_candidate(candidate, rows, SEED, threads=1)
    # The search's rule with the default serving budget, without its MLflow child runs.
    best = search.choose(drawn, settings.serve.budget_us)
    assert best is not None
    search.refit_best(best, rows, SEED, threads=1)
    return Champion(best.pipeline, best.family, rows.holdout, best.holdout, drawn, SAMPLE_ROWS)


@pytest.fixture(scope="session")
def api(champion, tmp_path_factory):
    """The inference API serving the champion (compiled and checked as a registry version)."""
    settings = Settings.from_env(
        {
            "COVERTYPE_HOME": tmp_path_factory.mktemp("model-api"),
            "COVERTYPE_AUTH": "off",
            "COVERTYPE_PREDICTION_LOG": "off",
        }
    )
    app = create_app(settings, watch=False)
    app.state.holder.serve_pipeline(champion.pipeline, VERSION, tags={"family": champion.family})
    with TestClient(app) as client:
        yield client
