"""`covertype reproduce VERSION`: refit a version from what made it and say whether the
result is the same model.

One module per step, in the order `reproduce()` (in `run.py`) goes through them:

- `rows`: the version's shares, from its snapshot (default) or from the data DB's current
  rows selected by the snapshot's row keys, with the rows that differ and their batches;
- `compare`: the checks (data digests, the search's draws, holdout predictions and
  scores, holdout metrics, and the code and libraries for information) and their table;
- `run`: the version and its manifest from MLflow, the refit, the reproduction run and the
  version's `reproduced.*` tags.

Exit codes of the command: 0 identical, 1 different, 2 nothing could be checked (an unknown
version, no manifest, a snapshot missing or corrupted); MLflow unreachable is an error too.
"""

from __future__ import annotations

from covertype.errors import CovertypeError


class ReproduceError(CovertypeError):
    """A version that cannot be reproduced as asked: nothing was refitted or recorded."""

    exit_code = 2
