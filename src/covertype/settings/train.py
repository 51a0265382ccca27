"""The random search and the data shares it trains, chooses and judges on."""

from __future__ import annotations

from covertype.settings.values import Group, setting


class TrainSettings(Group):
    n_iter: int = setting(5, "COVERTYPE_TRAIN_N_ITER", "candidates of the random search", ge=1)
    seed: int = setting(0, "COVERTYPE_TRAIN_SEED", "seed of the search's draws and of each fit")
    threads: int = setting(
        0,
        "COVERTYPE_TRAIN_THREADS",
        "threads of each training fit; 0: every core (the local stack: all but one)",
        ge=0,
    )
    holdout_percent: int = setting(
        20, "COVERTYPE_HOLDOUT_PERCENT", "rows held out, by row key", ge=1, le=50
    )
    validation_percent: int = setting(
        20,
        "COVERTYPE_VALIDATION_PERCENT",
        "of the other rows, those the search chooses the candidate on",
        ge=1,
        le=50,
    )
    reproduce_tolerance: float = setting(
        1e-9,
        "COVERTYPE_REPRODUCE_TOLERANCE",
        "largest difference of a holdout probability `covertype reproduce` counts as the same",
        ge=0,
    )
