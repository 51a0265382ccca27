"""What a fitted pipeline costs to serve, measured: the microseconds of one single-row answer
and of one row of a batch, through the predictor the API would serve it with, with one
thread, after a warm-up, on real rows.

The clock is the thread's CPU time, not the wall: a search runs beside other work (other
fits, Airflow, a test suite), and time spent waiting for a core is not the model's cost.
What other work still adds (caches, memory bandwidth, a shared core) only ever adds, so of
PASSES passes over the rows the one with the lowest median counts, as `timeit` takes the
fastest of its repeats.

The search measures every candidate with it and the registry tags every version with it;
the serving budget (COVERTYPE_SERVE_BUDGET_US) is read against `single_row_us`. A figure
of the machine that measured it: the API shows it as measured, never as a promise.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

ROWS = 300  # timed one at a time, then as one batch
WARMUP = 50
PASSES = 3  # over the rows; the cheapest pass counts (one pass moved up to 2× here)

TAG = "serving."  # the version's tags: serving.single_row_us, ...


@dataclass(frozen=True)
class ServingCost:
    single_row_us: float  # median of a pass of single-row answers (the lowest of PASSES)
    single_row_p90_us: float  # of the same pass
    batch_row_us: float  # a batch of `rows` rows (the fastest of PASSES), per row
    predictor: str  # "fast" (the model's own arithmetic without pandas) or "pipeline"
    rows: int

    def metrics(self) -> dict[str, float]:
        """The run's metrics."""
        return {
            "serving_single_row_us": self.single_row_us,
            "serving_single_row_p90_us": self.single_row_p90_us,
            "serving_batch_row_us": self.batch_row_us,
        }

    def tags(self) -> dict[str, str]:
        """The version's tags."""
        return {
            f"{TAG}single_row_us": f"{self.single_row_us:.1f}",
            f"{TAG}single_row_p90_us": f"{self.single_row_p90_us:.1f}",
            f"{TAG}batch_row_us": f"{self.batch_row_us:.2f}",
            f"{TAG}predictor": self.predictor,
            f"{TAG}rows": str(self.rows),
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> ServingCost | None:
        """A version's measured cost; None for one registered before costs were measured."""
        try:
            return cls(
                single_row_us=float(tags[f"{TAG}single_row_us"]),
                single_row_p90_us=float(tags[f"{TAG}single_row_p90_us"]),
                batch_row_us=float(tags[f"{TAG}batch_row_us"]),
                predictor=tags[f"{TAG}predictor"],
                rows=int(tags[f"{TAG}rows"]),
            )
        except (KeyError, ValueError):
            return None

    def within(self, budget_us: float) -> bool:
        """Within a budget of single-row microseconds (0: no budget)."""
        return budget_us == 0 or self.single_row_us <= budget_us


def measure(pipeline, frame: pd.DataFrame, rows: int = ROWS) -> ServingCost:
    """Serve `pipeline` as the API would (its predictor, checked against it; ONNX Runtime's
    trees, which serve batches of LightGBM, are not built here: the booster's batch stands
    in) and time it on the first `rows` rows of `frame` (the 12 fields)."""
    from threadpoolctl import threadpool_limits

    from covertype import schema
    from covertype.serve.predictor_choice import compile_predictor

    records = [schema.validate_record(r) for r in frame.head(rows).to_dict("records")]
    if not records:
        raise ValueError("serving cost: no rows to measure on")
    with threadpool_limits(1):
        predictor, _ = compile_predictor(pipeline, extra=records[:8], prefer="fast")
        for record in records[:WARMUP]:
            predictor.classify_one(record)
        passes, batch = [], []
        for _ in range(PASSES):
            single = []
            for record in records:
                started = time.thread_time_ns()
                predictor.classify_one(record)
                single.append((time.thread_time_ns() - started) / 1000)
            passes.append(sorted(single))
            started = time.thread_time_ns()
            predictor.classify_many(records)
            batch.append((time.thread_time_ns() - started) / 1000 / len(records))
    cheapest = min(passes, key=statistics.median)
    return ServingCost(
        single_row_us=statistics.median(cheapest),
        single_row_p90_us=cheapest[int(0.9 * (len(cheapest) - 1))],
        batch_row_us=min(batch),
        predictor=predictor.kind,
        rows=len(records),
    )
