"""The closed loop on the real data: drift, live accuracy and the retraining policy, batch
by batch, for each drift scenario of the source API, side by side in one run.

    .venv/bin/python benchmarks/bench_drift.py                      # random, wilderness, elevation
    .venv/bin/python benchmarks/bench_drift.py --order wilderness

What the platform does, with the same functions and without its servers:
- the source API's `partition` of the shared covtype file (COVERTYPE_SOURCE_DATA) for the
  order, and one collection call per batch (`call_rows`: a tenth of the batch, about 4,000
  rows, what `covertype ingest` stores);
- batch 1 trains the first champion. For every later batch: Evidently's report
  (`monitor.drift.compare`) of the batch against a seeded sample of at most
  COVERTYPE_DRIFT_REFERENCE_ROWS (5,000) of the champion's training + validation rows;
  the champion's live accuracy and macro F1 on the batch (the "before"); the retraining
  policy (`policy.retrain_decision`); when it trains, a challenger on every row so
  far (training + validation shares by row key) and the gate (`train.gate.decide` on the
  holdout share of every row so far); "after" is the champion after the gate on the
  batch's holdout rows (rows no model trained on), beside the old champion on those rows.
- a training here is one fixed LightGBM configuration (the search's strongest family, its
  space's middle), not the 5-candidate search, so the table is about data, not luck.
- last: the time of one report on a whole 40k-row batch (every row the batch holds).

Anchor: `random` is today's behaviour (goal: no batch flagged, no false alarm); the
drifted orders should be flagged where their data changes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from covertype import dataset, db, schema, source
from covertype.monitor.drift import compare
from covertype.monitor.reference import REFERENCE_SEED
from covertype.retraining import policy
from covertype.settings import Settings
from covertype.train import data, evaluate, gate
from covertype.train.families import LIGHTGBM

PARAMS = {
    "n_estimators": 250,
    "num_leaves": 63,
    "learning_rate": 0.1,
    "min_child_samples": 20,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
}
SEED = 0


@dataclass
class Model:
    number: int  # 1, 2, ... in the order trained and promoted
    pipeline: object
    rows: int  # rows its training read (every share)
    reference: pd.DataFrame  # the sample of its training + validation rows


def keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with the row key the data DB gives them."""
    keys = [db.row_key(r) for r in frame[list(schema.FIELDS)].itertuples(index=False)]
    return frame.assign(row_key=keys)


def train(rows: pd.DataFrame, settings: Settings, number: int) -> Model:
    split = data.split(rows, settings)
    learned = split.train + split.validation
    pipeline = LIGHTGBM.fit(PARAMS, learned.X, learned.y, SEED)
    size = min(settings.monitor.drift_reference_rows, len(learned))
    picked = np.sort(np.random.default_rng(REFERENCE_SEED).choice(len(learned), size, False))
    reference = learned.X.iloc[picked]
    return Model(number, pipeline, len(rows), reference)


def scores(model: Model, frame: pd.DataFrame) -> dict[str, float]:
    predicted = model.pipeline.predict(frame[list(schema.FEATURES)])
    return evaluate.scores(frame[schema.LABEL].to_numpy(), predicted, "live")


def run_order(frame: pd.DataFrame, order: str, settings: Settings) -> tuple[list[dict], list]:
    batches = source.partition(frame, order)
    rng = np.random.default_rng(SEED)
    collected = [keyed(frame.iloc[source.call_rows(b, rng)]) for b in batches]
    stored = collected[0]
    champion = train(stored, settings, 1)
    lines, seconds = [], []
    for number, batch in enumerate(collected[1:], 2):
        started = time.perf_counter()
        drift = compare(champion.reference, batch)
        seconds.append(time.perf_counter() - started)
        before = scores(champion, batch)
        stored = pd.concat([stored, batch], ignore_index=True)
        facts = policy.RetrainFacts(
            champion_version=str(champion.number),
            champion_rows=champion.rows,
            rows_now=len(stored),
            drift=policy.DriftFacts(
                batch_number=number,
                dataset_drift=drift.dataset_drift,
                drifted_features=drift.drifted_features,
                features=drift.features,
                share=drift.share,
                threshold=drift.threshold,
            ),
            min_new_rows_percent=settings.monitor.retrain_min_new_rows_percent,
        )
        decision = policy.retrain_decision(facts)
        holdout = stored[data.bucket(stored["row_key"], 0) < settings.train.holdout_percent]
        batch_holdout = holdout[holdout["row_key"].isin(batch["row_key"])]
        old = champion
        line = {
            "batch": number,
            "rows": len(batch),
            "area": batch[schema.WILDERNESS].mode()[0],
            "elevation": f"{batch['Elevation'].min()}-{batch['Elevation'].max()}",
            "drift": drift.dataset_drift,
            "share": drift.share,
            "before": before,
            "trained": decision.train,
            "promoted": None,
            "old_on_holdout": scores(old, batch_holdout),
        }
        if decision.train:
            challenger = train(stored, settings, champion.number + 1)
            new_f1 = scores(challenger, holdout)["live_macro_f1"]
            old_f1 = scores(champion, holdout)["live_macro_f1"]
            old_champion = gate.Champion(str(champion.number), old_f1)
            verdict = gate.decide(new_f1, old_champion, len(holdout), "covertype", "champion")
            line["promoted"] = verdict.promoted
            if verdict.promoted:
                champion = challenger
        line["after_on_holdout"] = scores(champion, batch_holdout)
        line["reason"] = decision.reason
        lines.append(line)
        print(f"  {order} batch {number}: {decision.reason}", flush=True)
    return lines, seconds


def print_order(order: str, lines: list[dict], seconds: list[float]) -> None:
    print(f"\n### order {order} ({source.ORDERS[order]})\n")
    print(
        "| batch | rows | main area | elevation | drift | share | before acc | before F1 "
        "| trained | promoted | old acc (holdout) | after acc (holdout) |"
    )
    print("|---:|---:|---|---|---|---:|---:|---:|---|---|---:|---:|")
    for line in lines:
        before, old, after = line["before"], line["old_on_holdout"], line["after_on_holdout"]
        promoted = "–" if line["promoted"] is None else ("yes" if line["promoted"] else "no")
        print(
            f"| {line['batch']} | {line['rows']:,} | {line['area']} | {line['elevation']} "
            f"| {'**yes**' if line['drift'] else 'no'} | {line['share']:.2f} "
            f"| {before['live_accuracy']:.3f} | {before['live_macro_f1']:.3f} "
            f"| {'yes' if line['trained'] else 'no'} | {promoted} "
            f"| {old['live_accuracy']:.3f} | {after['live_accuracy']:.3f} |"
        )
    flagged = [line["batch"] for line in lines if line["drift"]]
    trained = sum(line["trained"] for line in lines)
    print(
        f"\n{order}: drift flagged on {len(flagged)} of {len(lines)} batches after the first "
        f"({', '.join(map(str, flagged)) or 'none'}); first flagged: "
        f"{flagged[0] if flagged else 'none'}; {trained} trainings; report on a ~4k batch: "
        f"median {statistics.median(seconds):.2f} s"
    )


def time_full_batch(frame: pd.DataFrame, settings: Settings) -> tuple[int, int, float]:
    """One report of a whole batch (every row it holds) against a 5,000-row reference."""
    batches = source.partition(frame, "random")
    reference = frame.iloc[batches[0]].sample(settings.monitor.drift_reference_rows, random_state=0)
    current = frame.iloc[batches[1]]
    compare(reference.iloc[:2000], current.iloc[:2000])  # Evidently's imports and first run
    started = time.perf_counter()
    drift = compare(reference, current)
    return len(reference), drift.current_rows, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--order", action="append", choices=list(source.ORDERS))
    args = parser.parse_args()
    settings = Settings()
    started = time.perf_counter()
    frame = dataset.load_dataset(settings)
    print(f"{len(frame):,} rows of {settings.source.data} ({time.perf_counter() - started:.1f} s)")
    results = {}
    for order in args.order or list(source.ORDERS):
        results[order] = run_order(frame, order, settings)
    for order, (lines, seconds) in results.items():
        print_order(order, lines, seconds)
    reference_rows, current_rows, seconds = time_full_batch(frame, settings)
    print(
        f"\none drift report, a whole batch of {current_rows:,} rows against "
        f"{reference_rows:,} reference rows: {seconds:.2f} s (Evidently, HTML included)"
    )


if __name__ == "__main__":
    main()
