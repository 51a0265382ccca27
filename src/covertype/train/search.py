"""The random search: candidates drawn in turn from the families, each fitted on the training
share, scored on the validation share and timed on the serving path in a child run; the best
within the serving budget refit and held out.

The holdout judges only the chosen model (no candidate is chosen by it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from covertype.serve import serving_cost
from covertype.train import evaluate, families
from covertype.train.data import Split

if TYPE_CHECKING:
    from covertype.serve.serving_cost import ServingCost

log = logging.getLogger(__name__)


class Fitted(Protocol):
    """A fitted pipeline, as the search uses it (a `families.Family.fit` answer)."""

    def predict(self, X: pd.DataFrame) -> np.ndarray: ...


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
    pipeline: Fitted | None = None  # fitted by fit_candidate, refit by refit_best
    cost: ServingCost | None = None  # measured by fit_candidate, again by refit_best

    @property
    def validation_macro_f1(self) -> float:
        return self.validation["validation_macro_f1"]

    @property
    def single_row_us(self) -> float:
        """Its measured single-row serving cost (infinite before it was timed)."""
        return self.cost.single_row_us if self.cost else float("inf")

    def within(self, budget_us: float) -> bool:
        return self.cost is not None and self.cost.within(budget_us)


def sample_candidates(n_iter: int, names: Sequence[str], seed: int) -> list[Candidate]:
    """Random parameters, families in turn, so each gets the same share of the budget."""
    from sklearn.model_selection import ParameterSampler

    chosen = families.select(names)
    drawn = [list(ParameterSampler(f.space(), n_iter, random_state=seed)) for f in chosen]
    return [
        Candidate(chosen[i % len(chosen)].name, drawn[i % len(chosen)][i]) for i in range(n_iter)
    ]


def given_candidates(configs: Sequence[tuple[str, dict]]) -> list[Candidate]:
    """Candidates of given (family, params) configurations instead of a random draw."""
    families.select([name for name, _ in configs])
    return [Candidate(name, dict(params)) for name, params in configs]


def fit_candidate(candidate: Candidate, rows: Split, seed: int, threads: int = 0) -> np.ndarray:
    """Fit on the training share, score on the validation share (what the search chooses
    by); returns the validation predictions."""
    family = families.get(candidate.family)
    started = time.perf_counter()
    pipeline = family.fit(candidate.params, rows.train.X, rows.train.y, seed, threads)
    candidate.pipeline = pipeline
    candidate.fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = pipeline.predict(rows.validation.X)
    candidate.predict_seconds = time.perf_counter() - started
    candidate.validation = evaluate.scores(rows.validation.y, predicted, "validation")
    candidate.cost = serving_cost.measure(pipeline, rows.validation.X)
    return predicted


def refit_best(best: Candidate, rows: Split, seed: int, threads: int = 0) -> float:
    """Refit the chosen configuration on training + validation rows (the validation share
    only served to choose it) and score it on the holdout; returns the refit seconds."""
    family = families.get(best.family)
    refit = rows.train + rows.validation
    started = time.perf_counter()
    pipeline = family.fit(best.params, refit.X, refit.y, seed, threads)
    best.pipeline = pipeline
    seconds = time.perf_counter() - started
    predicted = pipeline.predict(rows.holdout.X)
    best.holdout_predicted = predicted
    best.holdout = evaluate.scores(rows.holdout.y, predicted, "holdout")
    best.cost = serving_cost.measure(pipeline, rows.holdout.X)  # the version's own trees
    return seconds


def search(
    drawn: Sequence[Candidate],
    rows: Split,
    seed: int,
    dataset,
    say: Callable[[str], None],
    threads: int = 0,
    budget_us: float = 0.0,
) -> Candidate | None:
    """Every candidate in a child run of the active run, a progress line each; the best by
    validation macro F1 within the serving budget, or None (`nothing_chosen` says why)."""
    for i, candidate in enumerate(drawn, 1):
        run_candidate(candidate, rows, seed, dataset, threads, budget_us)
        if candidate.status == "FINISHED":
            over = "" if candidate.within(budget_us) else f", over the {budget_us:g} µs budget"
            say(
                f"[{i}/{len(drawn)}] {candidate.family} {_short(candidate.params)}: validation "
                f"macro F1 {candidate.validation_macro_f1:.4f} (fit {candidate.fit_seconds:.1f}s"
                f"; {candidate.single_row_us:.0f} µs a row{over})"
            )
        else:
            say(f"[{i}/{len(drawn)}] {candidate.family} failed: {candidate.error}")
    return choose(drawn, budget_us)


def scored(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates that were fitted, scored and timed (a failed one was not)."""
    return [c for c in candidates if c.status != "FAILED" and c.validation and c.cost]


def choose(candidates: Sequence[Candidate], budget_us: float = 0.0) -> Candidate | None:
    """The search's rule: the best validation macro F1 of the scored candidates whose
    single-row serving cost is within `budget_us` (0: any cost); None when none is."""
    within = [c for c in scored(candidates) if c.within(budget_us)]
    return max(within, key=lambda c: c.validation_macro_f1) if within else None


def nothing_chosen(candidates: Sequence[Candidate], budget_us: float) -> str:
    """Why `choose` found nothing: every candidate failed, or none is within the budget
    (naming the cheapest one's cost)."""
    timed = scored(candidates)
    if not timed:
        return f"all {len(candidates)} candidates failed"
    cheapest = min(timed, key=lambda c: c.single_row_us)
    return (
        f"no candidate within the serving budget of {budget_us:g} µs a row "
        f"(COVERTYPE_SERVE_BUDGET_US): the cheapest of {len(timed)}, {cheapest.family} "
        f"{_short(cheapest.params)} (run {cheapest.run_id}), costs "
        f"{cheapest.single_row_us:.0f} µs; nothing was registered or promoted"
    )


def run_candidate(
    candidate: Candidate, rows: Split, seed: int, dataset, threads: int = 0, budget_us: float = 0
) -> None:
    """Fit, score, time and log one candidate in a child run. A failure ends that run FAILED
    (MLflow does so when the exception leaves the `with`) and the search goes on."""
    import mlflow

    try:
        with mlflow.start_run(run_name=candidate.family, nested=True) as run:
            candidate.run_id = run.info.run_id
            mlflow.set_tag("family", candidate.family)
            mlflow.log_params(candidate.params | {"family": candidate.family})
            mlflow.log_input(dataset, context="training")
            try:
                _fit_and_log(candidate, rows, seed, threads, budget_us)
            except Exception as error:
                mlflow.set_tag("error", f"{type(error).__name__}: {error}"[:5000])
                raise
    except Exception as error:
        candidate.status, candidate.error = "FAILED", f"{type(error).__name__}: {error}"
        log.exception("candidate failed", extra={"family": candidate.family})
    else:
        candidate.status = "FINISHED"


def _fit_and_log(
    candidate: Candidate, rows: Split, seed: int, threads: int, budget_us: float
) -> None:
    import mlflow

    family = families.get(candidate.family)
    mlflow.log_param("fit_rows", family.fit_rows(len(rows.train)))
    predicted = fit_candidate(candidate, rows, seed, threads)
    assert candidate.cost is not None
    mlflow.log_metrics(
        candidate.validation
        | candidate.cost.metrics()
        | {
            "fit_seconds": candidate.fit_seconds,
            "predict_seconds": candidate.predict_seconds,
            "predict_rows_per_second": len(predicted) / max(candidate.predict_seconds, 1e-9),
        }
    )
    mlflow.set_tags(
        candidate.cost.tags() | {"serving.within_budget": str(candidate.within(budget_us)).lower()}
    )
    evaluate.log_confusion(rows.validation.y, predicted, "Validation")


def _short(params: dict) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
