"""Training: a random search over model families, tracked in MLflow, gated into the registry.

`train()` is what `covertype train` and the Airflow DAG call. One module per stage, in the
order `train()` (in `run.py`) goes through them:

- `data`: every row of the data DB, split by row key into training, validation and holdout
  shares (a row never moves between holdout and training as data grows), lineage tags;
- `families`: what each model family is (search space, pipeline, fit, row cap);
- `search`: `n_iter` candidates drawn in turn from the families, one child run each, scored
  on the validation share; the best refit on training + validation rows, scored on the holdout;
- `evaluate`: the scores and the confusion matrix every run logs;
- `registry`: the winner logged with signature and input example, registered as a version;
- `gate`: the alias moves to that version only when it beats the current champion's macro F1
  re-scored on today's holdout (`decide` is the rule, `apply` the MLflow step).

This package is imported lazily: `from covertype.train import FAMILIES` (or `import
covertype.train.families`) loads no numerical library, so DAG files may use it at parse time;
the other names load their stage module on first use.
"""

from __future__ import annotations

import importlib

from covertype.errors import CovertypeError


class TrainingError(CovertypeError):
    """Training cannot start or produced nothing to register."""


# What `from covertype.train import ...` offers: name → the stage module that defines it.
_EXPORTS = {
    "FAMILIES": "families",
    "Family": "families",
    "build_pipeline": "families",
    "fit_pipeline": "families",
    "Split": "data",
    "load_rows": "data",
    "split": "data",
    "TrainResult": "run",
    "train": "run",
}
__all__ = ["TrainingError", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
