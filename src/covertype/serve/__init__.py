"""The inference API (`covertype serve`): the champion model in memory, hot-swapped.

`app` wires start-up, request ids, logs and metrics around the routes of `routes`;
`shapes` is every answer's shape; `records` is what the API reads (and its 422 messages);
`model` loads, watches and swaps the model (`served`: what it serves; `cache`: its copy on
disk); `fast` predicts without a DataFrame; `metrics` is what /metrics shows; `predlog`
records every answer in the data DB; `reports` shows the latest drift reports as gauges.

`create_app` and `run` load the app on first use: the UI imports `records` alone.
"""

__all__ = ["create_app", "run"]


def __getattr__(name: str):
    if name in __all__:
        from covertype.serve import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
