"""The inference API (`covertype serve`): the champion model in memory, hot-swapped.

`app` has the routes, start-up and metrics; `model` loads, watches and swaps the model;
`fast` predicts without a DataFrame; `records` is what the API reads and writes.
"""

from covertype.serve.app import create_app, run

__all__ = ["create_app", "run"]
