"""Monitoring: does what the champion sees now look like what it learned from?

One module per step, in the order a report goes through them:

- `reference`: the champion (from the registry) and its reference rows: the rows its
  training read from the data DB, only their training + validation share (the hash-bucket
  split of `covertype.train.data`, never the holdout), a seeded sample of
  `COVERTYPE_DRIFT_REFERENCE_ROWS`;
- `drift`: Evidently's `Report([DataDriftPreset()])` of current rows against the reference,
  read into plain numbers (dataset drift, share, a score, test and verdict per feature);
- `reports`: `batch_report` (a collected batch, with the champion's live accuracy on it)
  and `predictions_report` (logged predictions since the last report), each stored in the
  data DB's `drift_reports` and logged to the MLflow experiment `covertype-monitoring`.

Evidently sends usage telemetry unless `DO_NOT_TRACK` is set: 0.7 checks
`os.environ.get("DO_NOT_TRACK") is None` each time it would send (its UI service and
collector; `Report.run` itself sends nothing). It is set here, in the process, before any
module of this package imports Evidently, so no report of ours can send anything.
"""

from __future__ import annotations

import os

os.environ["DO_NOT_TRACK"] = "1"

from covertype.errors import CovertypeError


class MonitoringError(CovertypeError):
    """A drift report cannot be made (bad input is a `not computed` report, not this)."""
