"""The model families on a small sample of real rows: each builds, fits, predicts, and saves
with only the artifact's trusted types; the search draws from them in turn."""

from dataclasses import replace

import pytest

from covertype import schema
from covertype.model_artifact import TRUSTED_TYPES, for_serving
from covertype.train import FAMILIES, TrainingError, build_pipeline
from covertype.train import families as fam
from covertype.train.search import sample_candidates

SMALL = {  # LightGBM on one thread: its spinning threads crawl on busy shared cores
    "lightgbm": {"n_estimators": 5, "num_threads": 1},
    "extra_trees": {"n_estimators": 5, "max_features": 0.5, "max_samples": 0.5},
    "svm": {"C": 1.0, "gamma": 0.1, "n_components": 50},
}


@pytest.fixture(scope="module")
def rows(real_frame):
    sample = real_frame.head(1500)
    return sample[list(schema.FEATURES)], sample[schema.LABEL].to_numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_saves_with_only_trusted_types(family, rows, real_frame):
    """skops loads nothing it was not told to trust: every type a pipeline of any family
    holds must be sklearn's own or listed in TRUSTED_TYPES, or logging the model fails."""
    import skops.io

    pipeline = fam.get(family).fit(SMALL[family], *rows, seed=0)
    saved = skops.io.dumps(pipeline)
    untrusted = skops.io.get_untrusted_types(data=saved)
    assert set(untrusted) <= set(TRUSTED_TYPES)
    # What was saved predicts as what was fitted, the 7 classes and nothing else.
    unseen = real_frame.iloc[5000:5300][list(schema.FEATURES)]
    loaded = skops.io.loads(saved, trusted=TRUSTED_TYPES)
    assert (loaded.predict(unseen) == pipeline.predict(unseen)).all()
    assert set(pipeline.predict(unseen)) <= set(range(7))


def test_lightgbm_splits_wilderness_and_soil_natively_as_categories(rows):
    pipeline = fam.LIGHTGBM.fit(SMALL["lightgbm"], *rows, seed=0)
    names = list(pipeline.named_steps["encode"].get_feature_names_out())
    booster = pipeline.named_steps["model"].booster_
    infos = booster.dump_model()["feature_infos"]
    categorical = [i for i, info in enumerate(infos.values()) if info["values"]]
    assert [names[i] for i in categorical] == [
        "categorical__Wilderness_Area",
        "categorical__Soil_Type",
    ]


def test_the_svm_fits_on_at_most_its_row_cap(rows):
    assert fam.SVM.max_rows == fam.SVM_MAX_ROWS == 10_000
    assert (fam.SVM.fit_rows(50_000), fam.SVM.fit_rows(900)) == (10_000, 900)
    assert fam.LIGHTGBM.fit_rows(50_000) == fam.EXTRA_TREES.fit_rows(50_000) == 50_000
    capped = replace(fam.SVM, max_rows=500)
    pipeline = capped.fit(SMALL["svm"], *rows, seed=0)
    scaler = pipeline.named_steps["encode"].named_transformers_["numeric"]
    assert scaler.n_samples_seen_ == 500


def test_for_serving_predicts_with_one_thread(rows):
    pipeline = fam.LIGHTGBM.fit(SMALL["lightgbm"], *rows, seed=0)
    assert pipeline.named_steps["model"].get_params()["n_jobs"] == -1  # fitted on every core
    for_serving(pipeline)
    assert pipeline.named_steps["model"].get_params()["n_jobs"] == 1
    svm = fam.SVM.fit(SMALL["svm"], *rows, seed=0)
    for_serving(svm)  # a model without threads is left as it is
    assert "n_jobs" not in svm.named_steps["model"].get_params()


def test_candidates_take_the_families_in_turn_from_their_spaces():
    drawn = sample_candidates(5, FAMILIES, seed=0)
    assert [c.family for c in drawn] == [*FAMILIES, *FAMILIES[:2]]
    for candidate in drawn:
        space = fam.get(candidate.family).space()
        assert set(candidate.params) == set(space)
        for name, allowed in space.items():
            if isinstance(allowed, list):
                assert candidate.params[name] in allowed
            else:  # a distribution
                assert allowed.support()[0] <= candidate.params[name] <= allowed.support()[1]
    assert [c.params for c in sample_candidates(5, FAMILIES, seed=0)] == [c.params for c in drawn]
    assert [c.params for c in sample_candidates(5, FAMILIES, seed=1)] != [c.params for c in drawn]


def test_an_unknown_family_names_what_is_allowed():
    with pytest.raises(TrainingError, match=r"\['xgboost'\] not allowed; allowed: lightgbm, "):
        sample_candidates(3, ["lightgbm", "xgboost"], seed=0)
    with pytest.raises(TrainingError, match="none given"):
        fam.select([])
    with pytest.raises(TrainingError, match="allowed: lightgbm, extra_trees, svm"):
        build_pipeline("xgboost", {}, seed=0)


def test_a_thread_budget_reaches_the_model_unless_the_params_set_one(real_frame):
    from covertype import schema
    from covertype.train import fit_pipeline

    rows = real_frame.iloc[:300]
    X, y = rows[list(schema.FEATURES)], rows[schema.LABEL].to_numpy()
    small = {"n_estimators": 3, "num_leaves": 7}
    assert fit_pipeline("lightgbm", small, X, y, seed=0, threads=1)[-1].n_jobs == 1
    assert fit_pipeline("extra_trees", {"n_estimators": 3}, X, y, seed=0, threads=1)[-1].n_jobs == 1
    assert fit_pipeline("lightgbm", small, X, y, seed=0)[-1].n_jobs == -1  # every core
    given = small | {"num_threads": 1}
    assert fit_pipeline("lightgbm", given, X, y, seed=0, threads=2)[-1].n_jobs == -1


def test_a_saved_pipeline_names_the_packages_it_needs_pinned(real_frame):
    from importlib.metadata import version

    from covertype import schema
    from covertype.model_artifact import pip_requirements
    from covertype.train import fit_pipeline

    rows = real_frame.iloc[:300]
    X, y = rows[list(schema.FEATURES)], rows[schema.LABEL].to_numpy()
    lightgbm = pip_requirements(fit_pipeline("lightgbm", {"n_estimators": 2}, X, y, seed=0))
    assert f"lightgbm=={version('lightgbm')}" in lightgbm
    assert f"scikit-learn=={version('scikit-learn')}" in lightgbm and "skops==" in str(lightgbm)
    trees = pip_requirements(fit_pipeline("extra_trees", {"n_estimators": 2}, X, y, seed=0))
    assert not any(r.startswith("lightgbm") for r in trees)
    assert all("==" in r for r in trees) and any(r.startswith("covertype==") for r in trees)
