"""The chosen model into the registry: logged in the parent run with its scores, signature
and input example (skops format, loadable with `model_artifact.TRUSTED_TYPES` only), registered
as a new version that carries what serving shows about it."""

from __future__ import annotations

from datetime import UTC, datetime

from covertype.model_artifact import TRUSTED_TYPES, for_serving, pip_requirements
from covertype.settings import Settings
from covertype.train import evaluate
from covertype.train.data import Split
from covertype.train.search import Candidate


def log_and_register(
    best: Candidate, rows: Split, settings: Settings, client, run_id: str, tags: dict[str, str]
) -> str:
    """Log `best` (refit and scored on the holdout) in the active run, register it and tag
    the version with its family, run, holdout metrics and training data; the version."""
    import mlflow
    from mlflow.models import infer_signature

    pipeline, predicted = best.pipeline, best.holdout_predicted
    assert pipeline is not None and predicted is not None, "log `best` after refit_best"
    example = rows.holdout.X.head(5)
    signature = infer_signature(example, pipeline.predict(example))
    mlflow.log_params(
        {f"best.{k}": v for k, v in best.params.items()} | {"best.family": best.family}
    )
    mlflow.log_metrics(best.validation | best.holdout)
    mlflow.set_tags({"best.run_id": best.run_id, "best.family": best.family})
    evaluate.log_confusion(rows.holdout.y, predicted, "Holdout")
    for_serving(pipeline)  # scored with every core; served one row at a time
    info = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        signature=signature,
        input_example=example,
        skops_trusted_types=TRUSTED_TYPES,
        pip_requirements=pip_requirements(pipeline),
    )
    version = str(mlflow.register_model(info.model_uri, settings.mlflow.model_name).version)
    served = {
        "family": best.family,
        "run_id": run_id,
        "holdout_accuracy": f"{best.holdout['holdout_accuracy']:.6f}",
        "holdout_macro_f1": f"{best.holdout['holdout_macro_f1']:.6f}",
        "trained_rows": tags["data.train_rows"],
        "trained_batches": tags["data.batches"],
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if best.cost is not None:  # measured on the refit trees, the version's own
        mlflow.log_metrics(best.cost.metrics())
        served |= best.cost.tags()
    for key, value in served.items():
        client.set_model_version_tag(settings.mlflow.model_name, version, key, value)
    return version


def record_manifest(client, settings: Settings, version: str, recorded: dict) -> None:
    """The manifest as the active run's `manifest.json` and its summary as tags of the run
    and of the version (before the gate: a version is described before anything serves it)."""
    import mlflow

    from covertype.train import manifest

    mlflow.log_dict(recorded, manifest.FILE)
    summary = manifest.tags(recorded)
    mlflow.set_tags(summary)
    for key, value in summary.items():
        client.set_model_version_tag(settings.mlflow.model_name, version, key, value)
