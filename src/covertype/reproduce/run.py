"""`reproduce()`: a version's manifest and rows, the refit of its winner on them, the checks,
and the reproduction recorded (a run of the training experiment, tags on the version).

Nothing is registered and no alias moves. An unknown version, a version without a
manifest, a missing or corrupted snapshot stop before the refit (ReproduceError, nothing
recorded); rows of the data DB that changed stop before the refit too, but are recorded as
the reproduction's result (the version no longer matches the DB).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from covertype.reproduce import ReproduceError, compare
from covertype.reproduce import rows as shares
from covertype.settings import Settings
from covertype.tracking.client import connect
from covertype.train import data, evaluate, families, manifest, snapshot


@dataclass
class Reproduction:
    version: str
    source: str
    checks: list[compare.Check]
    identical: bool
    summary: str
    numbers: dict[str, float] = field(default_factory=dict)
    run_id: str = ""

    def table(self) -> str:
        return compare.table(self.checks)


def reproduce(
    settings: Settings,
    version: str,
    source: str = "snapshot",
    progress: Callable[[str], None] | None = None,
) -> Reproduction:
    """Refit `version` of the settings' model from `source` ("snapshot" or "db"), compare,
    record; ReproduceError when it cannot be checked."""
    if source not in shares.SOURCES:
        raise ReproduceError(f"--from: {source!r} not allowed; allowed: snapshot, db")
    say = progress or (lambda line: None)
    started = time.perf_counter()
    client = connect(settings)
    name = settings.mlflow.model_name
    found = _version(client, name, version)
    recorded = _manifest(client, settings, found)

    say(f"reading the rows of {name} version {version} from {source}")
    rows = shares.from_snapshot(recorded, settings.mlflow.tracking_uri)
    difference = None
    if source == "db":
        rows, difference = shares.from_db(rows, settings)
    digests = {n: snapshot.rows_digest(rows[n]) for n in snapshot.SHARES}
    checks = compare.data(recorded, digests) + compare.draws(recorded)
    numbers: dict[str, float] = {}
    if difference is not None and difference.rows:
        checks.append(compare.db_rows(difference.text()))
        summary = f"differs: the data DB's rows differ: {difference.text()}; not refitted"
    else:
        split = shares.split_of(rows)
        winner = recorded["winner"]
        say(f"refitting {winner['family']} on {len(split.train) + len(split.validation)} rows")
        refit, numbers["refit_seconds"] = _refit(recorded, split)
        served = _registered_model(settings, name, version)
        refit_classes = refit.predict(split.holdout.X)
        checks_p, found_numbers = compare.predictions(
            served.predict(split.holdout.X),
            _scores(served, split.holdout.X),
            refit_classes,
            _scores(refit, split.holdout.X),
            settings.train.reproduce_tolerance,
        )
        numbers |= found_numbers
        scores = evaluate.scores(split.holdout.y, refit_classes, "holdout")
        numbers |= {k: scores[k] for k in ("holdout_macro_f1", "holdout_accuracy")}
        checks += checks_p + compare.metrics(recorded, scores)
        summary = _summary(checks, numbers)
    checks += compare.environment(recorded)
    numbers["seconds"] = time.perf_counter() - started
    result = Reproduction(version, source, checks, compare.identical(checks), summary, numbers)
    _record(client, settings, found, result)
    return result


def _summary(checks: list[compare.Check], numbers: dict[str, float]) -> str:
    if compare.identical(checks):
        exact = "bit-identical" if numbers["max_score_difference"] == 0 else "identical"
        return f"{exact}: same rows, same draws, same holdout answers and metrics"
    failed = [c.what for c in checks if c.counts and not c.same]
    return "differs: " + "; ".join(failed)


def _version(client, name: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    try:
        known = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        known = []
    listed = ", ".join(map(str, known)) if known else "none"
    raise ReproduceError(f"{name} has no version {version!r}; its versions: {listed}")


def _manifest(client, settings: Settings, version) -> dict:
    """The version's manifest; ReproduceError saying what can still be checked without."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(version.run_id, manifest.FILE, tmp)
            return json.loads(Path(path).read_text())
    except Exception:
        pass
    raise ReproduceError(
        f"{version.name} version {version.version} has no manifest (trained before "
        f"reproducible versions), so it cannot be refitted; {_key_check(client, settings, version)}"
    )


def _key_check(client, settings: Settings, version) -> str:
    """What an old version still allows: its run's row-key hash against the data DB's rows
    of the batches it recorded."""
    tags = client.get_run(version.run_id).data.tags
    recorded, batches = tags.get("data.content_hash"), tags.get("data.batches", "")
    if not recorded:
        return "its run records no row keys either"
    try:
        frame = data.read_rows(settings)
    except Exception as error:
        return f"its row-key hash could not be checked: {error}"
    wanted = {int(b) for b in batches.split(",") if b}
    keys = frame.loc[frame["batch_number"].isin(wanted), "row_key"]
    same = data.content_hash(keys) == recorded
    verdict = "the same keys" if same else "other keys"
    return (
        f"still checked: the data DB's rows of batches {batches} have {verdict} as its "
        f"run recorded (key hash {recorded[:12]}…)"
    )


def _refit(recorded: dict, split) -> tuple:
    winner, fit = recorded["winner"], recorded["fit"]
    refit_rows = split.train + split.validation
    started = time.perf_counter()
    pipeline = families.fit_pipeline(
        winner["family"], winner["params"], refit_rows.X, refit_rows.y, fit["seed"], fit["threads"]
    )
    return pipeline, time.perf_counter() - started


def _registered_model(settings: Settings, name: str, version: str):
    import mlflow

    try:
        with tempfile.TemporaryDirectory() as tmp:
            return mlflow.sklearn.load_model(f"models:/{name}/{version}", dst_path=tmp)
    except Exception as error:
        raise ReproduceError(
            f"{name} version {version}'s model cannot be loaded to compare with "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from None


def _scores(pipeline, X) -> np.ndarray:
    """Class probabilities, or decision scores for a model without them (the linear SVM)."""
    if hasattr(pipeline, "predict_proba"):
        return pipeline.predict_proba(X)
    return pipeline.decision_function(X)


def _record(client, settings: Settings, version, result: Reproduction) -> None:
    """The reproduction as a run of the training experiment, linked to the version both ways."""
    name = settings.mlflow.model_name
    verdict = "identical" if result.identical else "differs"
    experiment = client.get_experiment_by_name(settings.mlflow.experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(settings.mlflow.experiment_name)
    )
    run = client.create_run(
        experiment_id,
        run_name=f"reproduce-v{version.version}-{result.source}",
        tags={
            "kind": "reproduction",
            "reproduces.model": name,
            "reproduces.version": str(version.version),
            "reproduces.run_id": version.run_id,
            "reproduce.from": result.source,
            "reproduce.result": verdict,
            "reproduce.summary": result.summary[:5000],
        },
    )
    result.run_id = run.info.run_id
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = [Metric(key, float(number), stamp, 0) for key, number in result.numbers.items()]
    client.log_batch(result.run_id, metrics=metrics)
    client.log_text(result.run_id, result.table(), "reproduction.txt")
    client.log_dict(result.run_id, [c.as_dict() for c in result.checks], "reproduction.json")
    client.set_terminated(result.run_id, "FINISHED")
    when = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in {
        "reproduced.result": verdict,
        "reproduced.summary": result.summary[:5000],
        "reproduced.at": when,
        "reproduced.from": result.source,
        "reproduced.run_id": result.run_id,
    }.items():
        client.set_model_version_tag(name, str(version.version), key, value)
