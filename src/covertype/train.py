"""Training: a random search over model families, tracked in MLflow, gated into the registry.

`train()` is what `covertype train` and the Airflow DAG call. It reads every row of the
data DB, holds out a fixed share of rows chosen by row key (a row never moves between
holdout and training as data grows), tries `n_iter` candidates drawn in turn from the
families (one child run each, scored on a validation share), refits the best on training +
validation rows and scores it, alone, on the holdout; logs it in the parent run, registers
it as a new version, and moves the serving alias to it only when it beats the current
champion's macro F1 re-scored on today's holdout.

Families: LightGBM (native categorical), bagged extra trees (one-hot) and the seed's SVM,
made tractable as an RBF kernel approximation (Nystroem) + a linear SVM, fitted on at most
`SVM_MAX_ROWS` rows. Every pipeline starts with `features.add_engineered`.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from covertype import db, features, schema, tracking
from covertype.settings import Settings, get_settings

log = logging.getLogger(__name__)

FAMILIES = ("lightgbm", "extra_trees", "svm")
SVM_MAX_ROWS = 10_000
# Positions of Wilderness_Area and Soil_Type after the encoder (numerics come first).
LIGHTGBM_CATEGORICAL = [len(features.NUMERIC_OUT), len(features.NUMERIC_OUT) + 1]
# Types a saved pipeline may hold beyond scikit-learn's own (skops loads nothing else).
TRUSTED_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "sklearn.tree._tree.Tree",  # the extra trees' (skops >= 0.13 no longer trusts it)
    "covertype.features.add_engineered",
    "covertype.features.engineered_names",
]


class TrainingError(RuntimeError):
    """Training cannot start or produced nothing to register."""


@dataclass
class Candidate:
    family: str
    params: dict
    run_id: str = ""
    status: str = "pending"
    validation: dict = field(default_factory=dict)
    holdout: dict = field(default_factory=dict)  # the chosen candidate's, after its refit
    holdout_predicted: np.ndarray | None = None
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    error: str = ""
    pipeline: object = None


@dataclass
class TrainResult:
    model_name: str
    version: str
    run_id: str
    family: str
    params: dict
    holdout_macro_f1: float
    holdout_accuracy: float
    promoted: bool
    decision: str
    champion_version: str | None
    champion_macro_f1: float | None
    alias: str
    rows: int
    holdout_rows: int

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- data


def load_rows(engine: sa.Engine) -> pd.DataFrame:
    """Every stored row of `cover_type`: the 13 fields, row_key and batch_number."""
    columns = [db.cover_type.c[name] for name in (*schema.FIELDS, "row_key", "batch_number")]
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(*columns).order_by(db.cover_type.c.row_key), conn)
    for name in schema.CATEGORICAL:
        frame[name] = frame[name].astype(str)
    for f in (*schema.NUMERIC_FIELDS, schema.LABEL_FIELD):
        frame[f.name] = frame[f.name].astype(np.int64)
    return frame


def split(frame: pd.DataFrame, settings: Settings) -> tuple[pd.Series, pd.Series]:
    """Masks (holdout, validation) chosen from the row key alone, so they are stable."""
    holdout_bucket = frame["row_key"].str[:8].apply(int, base=16) % 100
    validation_bucket = frame["row_key"].str[8:16].apply(int, base=16) % 100
    holdout = holdout_bucket < settings.holdout_percent
    validation = ~holdout & (validation_bucket < settings.validation_percent)
    return holdout, validation


def content_hash(keys: Sequence[str]) -> str:
    """One hash of a set of rows (their row keys, sorted)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


# ---------------------------------------------------------------- models


def sample_candidates(n_iter: int, families: Sequence[str], seed: int) -> list[Candidate]:
    """Random parameters, families in turn, so each gets the same share of the budget."""
    from sklearn.model_selection import ParameterSampler

    _check_families(families)
    per_family = {
        family: list(ParameterSampler(search_space(family), n_iter, random_state=seed))
        for family in families
    }
    return [
        Candidate(families[i % len(families)], per_family[families[i % len(families)]][i])
        for i in range(n_iter)
    ]


def _check_families(families: Sequence[str]) -> None:
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        raise TrainingError(
            f"families: {unknown or 'none given'} not allowed; allowed: {', '.join(FAMILIES)}"
        )


def search_space(family: str) -> dict:
    from scipy.stats import loguniform

    if family == "lightgbm":
        return {
            # Measured on 58k real rows: 300-350 trees at a learning rate of 0.12-0.14 reach
            # the holdout accuracy of 500 at 0.084 (0.934-0.935) in two thirds of the time
            # (trees cost the same whatever the rows); softmax over 7 classes diverges from
            # a learning rate of about 0.15 up.
            "n_estimators": [250, 350],
            "num_leaves": [63, 127],
            "learning_rate": loguniform(0.08, 0.14),
            "min_child_samples": [10, 20],
            "colsample_bytree": [0.6, 0.8],
            "reg_lambda": [0.0, 1.0, 5.0],
        }
    if family == "extra_trees":
        return {
            "n_estimators": [60, 100],
            "max_features": [0.3, 0.5, 0.7],
            "min_samples_leaf": [1, 2],
            "max_samples": [0.5, 0.8],
        }
    return {
        "C": loguniform(0.5, 20),
        "gamma": loguniform(0.02, 0.3),
        "n_components": [300, 600, 1000],
    }


def build_pipeline(family: str, params: dict, seed: int):
    """engineer → encode (as the family needs) → estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
    )

    categories = [list(schema.WILDERNESS_AREAS), list(schema.SOIL_TYPES)]
    numeric = list(features.NUMERIC_OUT)
    categorical = list(schema.CATEGORICAL)
    engineer = FunctionTransformer(
        features.add_engineered, feature_names_out=features.engineered_names
    )
    if family == "lightgbm":
        from lightgbm import LGBMClassifier

        encode = ColumnTransformer(
            [
                ("numeric", "passthrough", numeric),
                (
                    "categorical",
                    OrdinalEncoder(categories=categories, dtype=np.float64),
                    categorical,
                ),
            ]
        )
        estimator = LGBMClassifier(
            **params,
            random_state=seed,
            n_jobs=-1,
            verbose=-1,
        )
    elif family == "extra_trees":
        from sklearn.ensemble import ExtraTreesClassifier

        encode = ColumnTransformer(
            [
                ("numeric", "passthrough", numeric),
                ("categorical", OneHotEncoder(categories=categories), categorical),
            ],
            sparse_threshold=0,
        )
        estimator = ExtraTreesClassifier(**params, bootstrap=True, random_state=seed, n_jobs=-1)
    elif family == "svm":
        from sklearn.kernel_approximation import Nystroem
        from sklearn.svm import LinearSVC

        encode = ColumnTransformer(
            [
                ("numeric", StandardScaler(), numeric),
                ("categorical", OneHotEncoder(categories=categories), categorical),
            ],
            sparse_threshold=0,
        )
        kernel = Nystroem(
            kernel="rbf",
            gamma=params["gamma"],
            n_components=params["n_components"],
            random_state=seed,
        )
        return Pipeline(
            [
                ("engineer", engineer),
                ("encode", encode),
                ("kernel", kernel),
                ("model", LinearSVC(C=params["C"], random_state=seed)),
            ]
        )
    else:
        raise TrainingError(f"family {family!r} not allowed; allowed: {FAMILIES}")
    return Pipeline([("engineer", engineer), ("encode", encode), ("model", estimator)])


def for_serving(pipeline) -> None:
    """One thread per predict: serving predicts one row at a time, where LightGBM's saved
    thread count (all cores) and joblib's pools cost more than the trees themselves."""
    model = pipeline.steps[-1][1]
    if "n_jobs" in model.get_params():
        model.set_params(n_jobs=1)


def scores(y_true: np.ndarray, y_pred: np.ndarray, prefix: str) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = list(range(len(schema.COVER_TYPE_NAMES)))
    result = {
        f"{prefix}_accuracy": float(accuracy_score(y_true, y_pred)),
        f"{prefix}_macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
    }
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for k in labels:
        result[f"{prefix}_precision_class_{k}"] = float(precision[k])
        result[f"{prefix}_recall_class_{k}"] = float(recall[k])
        result[f"{prefix}_f1_class_{k}"] = float(f1[k])
    return result


# ---------------------------------------------------------------- the run


def train(
    settings: Settings | None = None,
    n_iter: int | None = None,
    families: Sequence[str] = FAMILIES,
    progress: Callable[[str], None] | None = None,
    candidates: Sequence[tuple[str, dict]] | None = None,
) -> TrainResult:
    """Search, log, register and gate. Raises TrainingError or TrackingUnreachable.
    `candidates` replaces the random draw with given (family, params) configurations."""
    import mlflow

    settings = settings or get_settings()
    if candidates is not None:
        drawn = [Candidate(family, dict(params)) for family, params in candidates]
        _check_families([c.family for c in drawn])
    else:
        n_iter = n_iter or settings.train_n_iter
        drawn = sample_candidates(n_iter, list(families), settings.train_seed)
    n_iter = len(drawn)
    say = progress or (lambda line: log.info(line))

    engine = db.make_engine(settings.data_db)
    try:
        db.create_tables(engine)
        frame = load_rows(engine)
    finally:
        engine.dispose()
    _check_trainable(frame, settings)
    holdout_mask, validation_mask = split(frame, settings)
    train_rows = frame[~holdout_mask & ~validation_mask]
    validation_rows, holdout_rows = frame[validation_mask], frame[holdout_mask]
    _check_trainable(train_rows, settings, "the training share")
    X = {
        "train": train_rows[list(schema.FEATURES)],
        "validation": validation_rows[list(schema.FEATURES)],
        "holdout": holdout_rows[list(schema.FEATURES)],
    }
    y = {
        "train": train_rows[schema.LABEL].to_numpy(),
        "validation": validation_rows[schema.LABEL].to_numpy(),
        "holdout": holdout_rows[schema.LABEL].to_numpy(),
    }
    data_tags = {
        "data.rows": str(len(frame)),
        "data.batches": ",".join(str(b) for b in sorted(frame["batch_number"].unique())),
        "data.content_hash": content_hash(frame["row_key"]),
        "data.train_rows": str(len(train_rows)),
        "data.validation_rows": str(len(validation_rows)),
        "data.holdout_rows": str(len(holdout_rows)),
        "data.holdout_hash": content_hash(holdout_rows["row_key"]),
        "data.db": sa.engine.make_url(settings.data_db).render_as_string(hide_password=True),
    }
    say(
        f"training on {len(train_rows)} rows (validation {len(validation_rows)}, holdout "
        f"{len(holdout_rows)}) of batches {data_tags['data.batches']}; {n_iter} candidates"
    )

    client = tracking.connect(settings)
    mlflow.set_experiment(settings.experiment_name)
    dataset = _dataset(frame, data_tags)
    with mlflow.start_run(run_name=f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}") as parent:
        mlflow.set_tags(data_tags | {"kind": "training"})
        mlflow.log_input(dataset, context="training")
        families_tried = ",".join(sorted({c.family for c in drawn}))
        mlflow.log_params({"n_iter": n_iter, "families": families_tried})
        for i, candidate in enumerate(drawn, 1):
            _run_candidate(candidate, X, y, settings, dataset)
            if candidate.status == "FINISHED":
                say(
                    f"[{i}/{n_iter}] {candidate.family} {_short(candidate.params)}: validation "
                    f"macro F1 {candidate.validation['validation_macro_f1']:.4f} "
                    f"(fit {candidate.fit_seconds:.1f}s)"
                )
            else:
                say(f"[{i}/{n_iter}] {candidate.family} failed: {candidate.error}")
        finished = [c for c in drawn if c.status == "FINISHED"]
        if not finished:
            mlflow.set_tag("outcome", "every candidate failed")
            raise TrainingError(f"all {n_iter} candidates failed; see run {parent.info.run_id}")
        best = max(finished, key=lambda c: c.validation["validation_macro_f1"])
        say(f"refitting {best.family} on training + validation rows")
        refit_seconds = refit_best(best, X, y, settings.train_seed)
        mlflow.log_metrics({"refit_seconds": refit_seconds})
        mlflow.log_param("refit_rows", len(X["train"]) + len(X["validation"]))
        result = _register_and_gate(best, X, y, data_tags, settings, client, parent.info.run_id)
    say(
        f"best: {best.family} → {settings.model_name} version {result.version}, holdout macro "
        f"F1 {result.holdout_macro_f1:.4f}; {result.decision}"
    )
    return result


def _check_trainable(frame: pd.DataFrame, settings: Settings, what: str = "cover_type") -> None:
    url = sa.engine.make_url(settings.data_db).render_as_string(hide_password=True)
    if frame.empty:
        raise TrainingError(f"{what} in the data DB {url} has no rows; run `covertype ingest`")
    classes = frame[schema.LABEL].nunique()
    if classes < 2:
        raise TrainingError(
            f"{what} in the data DB {url} has {len(frame)} rows of a single class "
            f"({schema.COVER_TYPE_NAMES[frame[schema.LABEL].iloc[0]]}); at least 2 are needed"
        )


def _dataset(frame: pd.DataFrame, tags: dict):
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    # MLflow has no source type for a SQL table; this one records where the rows came from.
    source = CodeDatasetSource({"data_db": tags["data.db"], "table": db.cover_type.name})
    return mlflow.data.from_pandas(
        frame[list(schema.FIELDS)],
        source=source,
        name="cover_type",
        targets=schema.LABEL,
        digest=tags["data.content_hash"][:16],
    )


def _short(params: dict) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _run_candidate(candidate: Candidate, X: dict, y: dict, settings: Settings, dataset) -> None:
    """Fit, score and log one candidate in a child run. A failure ends that run FAILED
    (MLflow does so when the exception leaves the `with`) and the search goes on."""
    import mlflow

    try:
        with mlflow.start_run(run_name=candidate.family, nested=True) as run:
            candidate.run_id = run.info.run_id
            mlflow.set_tag("family", candidate.family)
            mlflow.log_params(candidate.params | {"family": candidate.family})
            mlflow.log_input(dataset, context="training")
            try:
                _fit_and_score(candidate, X, y, settings)
            except Exception as error:
                mlflow.set_tag("error", f"{type(error).__name__}: {error}"[:5000])
                raise
    except Exception as error:
        candidate.status, candidate.error = "FAILED", f"{type(error).__name__}: {error}"
        log.exception("candidate failed", extra={"family": candidate.family})
    else:
        candidate.status = "FINISHED"


def fit_pipeline(family: str, params: dict, X_fit: pd.DataFrame, y_fit: np.ndarray, seed: int):
    """Build and fit one configuration (all cores); the SVM on at most SVM_MAX_ROWS
    rows (a kernel approximation keeps it linear in rows, the cap keeps it in memory)."""
    if family == "svm" and len(X_fit) > SVM_MAX_ROWS:
        picked = np.random.default_rng(seed).choice(len(X_fit), SVM_MAX_ROWS, replace=False)
        X_fit, y_fit = X_fit.iloc[picked], y_fit[picked]
    pipeline = build_pipeline(family, params, seed)
    # LightGBM splits the two ordinal-encoded columns natively as categories.
    native = {"model__categorical_feature": LIGHTGBM_CATEGORICAL} if family == "lightgbm" else {}
    pipeline.fit(X_fit, y_fit, **native)
    return pipeline


def fit_candidate(candidate: Candidate, X: dict, y: dict, seed: int) -> np.ndarray:
    """Fit on the training share, score on the validation share (what the search chooses
    by); returns the validation predictions. The holdout judges only the chosen model."""
    started = time.perf_counter()
    family, params = candidate.family, candidate.params
    candidate.pipeline = fit_pipeline(family, params, X["train"], y["train"], seed)
    candidate.fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = candidate.pipeline.predict(X["validation"])
    candidate.predict_seconds = time.perf_counter() - started
    candidate.validation = scores(y["validation"], predicted, "validation")
    return predicted


def refit_best(best: Candidate, X: dict, y: dict, seed: int) -> float:
    """Refit the chosen configuration on training + validation rows (the validation share
    only served to choose it) and re-score it on the holdout; returns the refit seconds."""
    X_all = pd.concat([X["train"], X["validation"]])
    y_all = np.concatenate([y["train"], y["validation"]])
    started = time.perf_counter()
    best.pipeline = fit_pipeline(best.family, best.params, X_all, y_all, seed)
    seconds = time.perf_counter() - started
    best.holdout_predicted = best.pipeline.predict(X["holdout"])
    best.holdout = scores(y["holdout"], best.holdout_predicted, "holdout")
    return seconds


def _fit_and_score(candidate: Candidate, X: dict, y: dict, settings: Settings) -> None:
    import mlflow

    cap = SVM_MAX_ROWS if candidate.family == "svm" else len(X["train"])
    mlflow.log_param("fit_rows", min(cap, len(X["train"])))
    predicted = fit_candidate(candidate, X, y, settings.train_seed)
    mlflow.log_metrics(
        candidate.validation
        | {
            "fit_seconds": candidate.fit_seconds,
            "predict_seconds": candidate.predict_seconds,
            "predict_rows_per_second": len(predicted) / max(candidate.predict_seconds, 1e-9),
        }
    )
    _log_confusion(y["validation"], predicted, "Validation")


def _log_confusion(y_true: np.ndarray, y_pred: np.ndarray, share: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    labels = list(range(len(schema.COVER_TYPE_NAMES)))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    table = pd.DataFrame(matrix, index=schema.COVER_TYPE_NAMES, columns=schema.COVER_TYPE_NAMES)
    table.index.name = "true \\ predicted"
    mlflow.log_text(table.to_csv(), "confusion_matrix.csv")
    mlflow.log_table(table.reset_index(), "confusion_matrix.json")
    figure, axes = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay(matrix, display_labels=schema.COVER_TYPE_NAMES).plot(
        ax=axes, xticks_rotation=45, colorbar=False, values_format="d"
    )
    axes.set_title(f"{share} confusion matrix ({len(y_true)} rows)")
    figure.tight_layout()
    mlflow.log_figure(figure, "confusion_matrix.png")
    plt.close(figure)


def _register_and_gate(
    best: Candidate, X: dict, y: dict, data_tags: dict, settings: Settings, client, run_id: str
) -> TrainResult:
    import mlflow
    from mlflow.models import infer_signature

    example = X["holdout"].head(5)
    signature = infer_signature(example, best.pipeline.predict(example))
    mlflow.log_params(
        {f"best.{k}": v for k, v in best.params.items()} | {"best.family": best.family}
    )
    mlflow.log_metrics(best.validation | best.holdout)
    mlflow.set_tags({"best.run_id": best.run_id, "best.family": best.family})
    _log_confusion(y["holdout"], best.holdout_predicted, "Holdout")
    for_serving(best.pipeline)  # scored with every core; served one row at a time
    info = mlflow.sklearn.log_model(
        best.pipeline,
        name="model",
        signature=signature,
        input_example=example,
        skops_trusted_types=TRUSTED_TYPES,
    )
    version = mlflow.register_model(info.model_uri, settings.model_name).version
    name, alias = settings.model_name, settings.model_alias
    new_f1 = best.holdout["holdout_macro_f1"]

    champion_version, champion_f1 = _champion_score(client, settings, X["holdout"], y["holdout"])
    if champion_version is None:
        promoted, decision = True, f"promoted: {name} had no {alias} yet"
    elif champion_f1 is None:
        promoted, decision = True, f"promoted: champion v{champion_version} could not be scored"
    elif new_f1 > champion_f1:
        promoted = True
        decision = (
            f"promoted: macro F1 {new_f1:.4f} beats champion v{champion_version}'s "
            f"{champion_f1:.4f} on the same {len(y['holdout'])} held-out rows"
        )
    else:
        promoted = False
        decision = (
            f"kept champion v{champion_version}: its macro F1 {champion_f1:.4f} is not beaten "
            f"by {new_f1:.4f} on the same {len(y['holdout'])} held-out rows"
        )
    if promoted:
        client.set_registered_model_alias(name, alias, version)

    tags = {
        "gate.decision": decision,
        "gate.promoted": str(promoted).lower(),
        "gate.new_macro_f1": f"{new_f1:.6f}",
        "gate.champion_version": champion_version or "",
        "gate.champion_macro_f1": "" if champion_f1 is None else f"{champion_f1:.6f}",
        "gate.holdout_rows": str(len(y["holdout"])),
        "gate.holdout_hash": data_tags["data.holdout_hash"],
        "family": best.family,
        "run_id": run_id,
        "holdout_accuracy": f"{best.holdout['holdout_accuracy']:.6f}",
        "holdout_macro_f1": f"{new_f1:.6f}",
        "trained_rows": data_tags["data.train_rows"],
        "trained_batches": data_tags["data.batches"],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=decision)
    mlflow.set_tags({k: v for k, v in tags.items() if k.startswith("gate.")} | {"version": version})
    if champion_f1 is not None:
        mlflow.log_metric("gate_champion_macro_f1", champion_f1)
    mlflow.log_metric("gate_new_macro_f1", new_f1)
    return TrainResult(
        model_name=name,
        version=str(version),
        run_id=run_id,
        family=best.family,
        params=best.params,
        holdout_macro_f1=new_f1,
        holdout_accuracy=best.holdout["holdout_accuracy"],
        promoted=promoted,
        decision=decision,
        champion_version=champion_version,
        champion_macro_f1=champion_f1,
        alias=alias,
        rows=int(data_tags["data.rows"]),
        holdout_rows=len(y["holdout"]),
    )


def _champion_score(client, settings: Settings, X_holdout, y_holdout):
    """(version, macro F1 on today's holdout) of the current champion; (None, None) if none."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from sklearn.metrics import f1_score

    try:
        aliases = client.get_registered_model(settings.model_name).aliases
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None, None
        raise
    if settings.model_alias not in aliases:
        return None, None
    current = client.get_model_version(settings.model_name, aliases[settings.model_alias])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = mlflow.sklearn.load_model(
                f"models:/{settings.model_name}/{current.version}", dst_path=str(Path(tmp))
            )
            predicted = model.predict(X_holdout)
    except Exception:
        log.exception("champion could not be scored", extra={"version": current.version})
        return current.version, None
    labels = list(range(len(schema.COVER_TYPE_NAMES)))
    return current.version, float(
        f1_score(y_holdout, predicted, labels=labels, average="macro", zero_division=0)
    )
