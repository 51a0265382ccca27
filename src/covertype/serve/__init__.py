"""The inference API (`covertype serve`): the champion model in memory, hot-swapped, and
the challenger beside it predicting in shadow.

`app` wires start-up, request ids, logs and metrics around the routes of `routes`;
`responses` is every answer's shape and `answers` the prediction routes' pre-encoded JSON;
`records` is what the API reads (and its 422 messages); `api_keys` who may ask;
`model_holder` loads, watches and swaps the model of an alias (`alias_lookup`: where the
alias points; `model_files`: a version's files; `model_cache`: its copy on disk;
`served_model`: what it serves); `predictors` predict without a DataFrame (`encoder`,
`lightgbm_single_row`, `onnx_trees`), `predictor_choice` picks and checks one; `explain`
says why; `shadow` has the challenger predict a share of the requests off their path;
`metrics` is what /metrics shows; `prediction_log` records every answer (and the shadow's)
in the data DB; `db_gauges` read gauges from it: `drift_gauges` the latest drift reports,
`release_gauges` the release ledger's moves.

`create_app` and `run` load the app on first use: the UI imports `records` alone.
"""

__all__ = ["create_app", "run"]


def __getattr__(name: str):
    if name in __all__:
        from covertype.serve import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
