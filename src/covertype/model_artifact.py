"""The model artifact's rules, shared by the side that saves it (training) and the side that
loads it (serving): which types a saved pipeline may hold, and how it is set up to serve.

Cheap to import: no scikit-learn or LightGBM at module level.
"""

from __future__ import annotations

# Types a saved pipeline may hold beyond scikit-learn's own (skops loads nothing else).
TRUSTED_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "sklearn.tree._tree.Tree",  # the extra trees' (skops >= 0.13 no longer trusts it)
    "covertype.features.add_engineered",
    "covertype.features.engineered_names",
]


def for_serving(pipeline) -> None:
    """One thread per predict: serving predicts one row at a time, where LightGBM's saved
    thread count (all cores) and joblib's pools cost more than the trees themselves."""
    model = pipeline.steps[-1][1]
    if "n_jobs" in model.get_params():
        model.set_params(n_jobs=1)


def pip_requirements(pipeline) -> list[str]:
    """What a saved pipeline needs to load, pinned to the versions that saved it. Given to
    MLflow so it does not infer them: its inference loads the model again and scans every
    imported module (in an Airflow task, ~10 s and a thousand deprecation warnings)."""
    from importlib.metadata import version

    needed = ["covertype", "numpy", "pandas", "scikit-learn", "scipy", "skops"]
    if type(pipeline.steps[-1][1]).__module__.startswith("lightgbm"):
        needed.append("lightgbm")
    return [f"{name}=={version(name)}" for name in needed]
