"""`train()`: the stages in order, in one parent MLflow run (what `covertype train` and the
Airflow DAG call)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from covertype.settings import Settings, get_settings
from covertype.tracking.client import connect
from covertype.train import TrainingError, data, gate, manifest, registry, search, snapshot
from covertype.train.families import FAMILIES

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model_name: str
    version: str
    run_id: str
    family: str
    params: dict
    holdout_macro_f1: float
    holdout_accuracy: float
    promoted: bool  # passed the gate: took `alias`
    decision: str
    champion_version: str | None
    champion_macro_f1: float | None
    alias: str | None  # what it became: champion, challenger (shadow mode), None: refused
    rows: int
    holdout_rows: int

    def as_dict(self) -> dict:
        return asdict(self)


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
        drawn = search.given_candidates(candidates)
    else:
        n_iter = n_iter or settings.train.n_iter
        drawn = search.sample_candidates(n_iter, list(families), settings.train.seed)
    say = progress or log.info

    frame = data.read_rows(settings)
    rows = data.split(frame, settings)
    data.check_trainable(rows.train.y, settings, "the training share")
    tags = data.lineage_tags(frame, rows, settings)
    say(
        f"training on {len(rows.train)} rows (validation {len(rows.validation)}, holdout "
        f"{len(rows.holdout)}) of batches {tags['data.batches']}; {len(drawn)} candidates"
    )

    client = connect(settings)
    mlflow.set_experiment(settings.mlflow.experiment_name)
    threads = manifest.fit_threads(settings.train.threads)
    with mlflow.start_run(run_name=f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}") as parent:
        run_id = parent.info.run_id
        mlflow.set_tags(tags | {"kind": "training"})
        stored, snapshot_seconds = snapshot.store(client, settings.mlflow.experiment_name, rows)
        datasets = snapshot.mlflow_datasets(rows, stored, tags["data.db"])
        for share, dataset in datasets.items():
            mlflow.log_input(dataset, context=share)
        tried = ",".join(sorted({c.family for c in drawn}))
        mlflow.log_params(
            {"n_iter": len(drawn), "families": tried, "seed": settings.train.seed}
            | {"fit_threads": threads}
        )
        budget = settings.serve.budget_us
        mlflow.log_param("serve_budget_us", budget)
        best = search.search(
            drawn, rows, settings.train.seed, datasets["train"], say, threads, budget
        )
        if best is None:
            outcome = search.nothing_chosen(drawn, budget)
            mlflow.set_tag("outcome", outcome)
            raise TrainingError(f"{outcome}; see run {run_id}")
        say(f"refitting {best.family} on training + validation rows")
        refit_seconds = search.refit_best(best, rows, settings.train.seed, threads)
        mlflow.log_metrics({"refit_seconds": refit_seconds, "snapshot_seconds": snapshot_seconds})
        mlflow.log_param("refit_rows", len(rows.train) + len(rows.validation))
        version = registry.log_and_register(best, rows, settings, client, run_id, tags)
        recorded = manifest.build(
            settings=settings,
            drawn=drawn,
            best=best,
            stored=stored,
            batches=tags["data.batches"],
            model={"name": settings.mlflow.model_name, "version": version, "run_id": run_id},
            families=list(families),
            drawn_by="random" if candidates is None else "given",
        )
        registry.record_manifest(client, settings, version, recorded)
        new_f1 = best.holdout["holdout_macro_f1"]
        decision, champion = gate.apply(
            client, settings, version, new_f1, rows.holdout, tags["data.holdout_hash"], best.cost
        )
    say(
        f"best: {best.family} → {settings.mlflow.model_name} version {version}, holdout macro "
        f"F1 {new_f1:.4f}; {decision.text}"
    )
    return TrainResult(
        model_name=settings.mlflow.model_name,
        version=version,
        run_id=run_id,
        family=best.family,
        params=best.params,
        holdout_macro_f1=new_f1,
        holdout_accuracy=best.holdout["holdout_accuracy"],
        promoted=decision.promoted,
        decision=decision.text,
        champion_version=champion.version if champion else None,
        champion_macro_f1=champion.macro_f1 if champion else None,
        alias=decision.alias,
        rows=len(frame),
        holdout_rows=len(rows.holdout),
    )
