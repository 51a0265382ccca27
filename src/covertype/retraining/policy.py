"""The retraining policy: train by hand, without a champion, on drift, or when enough rows
were added since the champion's training; otherwise skip, saying why."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DriftFacts:
    """The latest batch drift report against the current champion."""

    batch_number: int | None
    dataset_drift: bool
    drifted_features: int
    features: int
    share: float
    threshold: float


@dataclass(frozen=True)
class RetrainFacts:
    """What the retraining policy looks at."""

    champion_version: str | None
    champion_rows: int  # rows the champion's training read (0 without a champion)
    rows_now: int  # rows in cover_type now
    drift: DriftFacts | None  # None: no batch report against this champion yet
    min_new_rows_percent: float
    manual: bool = False

    @property
    def new_rows(self) -> int:
        return max(self.rows_now - self.champion_rows, 0)

    @property
    def new_rows_percent(self) -> float:
        return 100 * self.new_rows / self.champion_rows if self.champion_rows else float("inf")


@dataclass(frozen=True)
class RetrainDecision:
    train: bool
    reason: str
    facts: RetrainFacts

    def as_dict(self) -> dict:
        return asdict(self)


def retrain_decision(facts: RetrainFacts) -> RetrainDecision:
    """Train by hand, without a champion, on drift, or when the rows added since the
    champion's training are at least `min_new_rows_percent` of the rows it read; otherwise
    skip, saying why."""

    def decision(train: bool, reason: str) -> RetrainDecision:
        return RetrainDecision(train, reason, facts)

    if facts.manual:
        return decision(True, "training requested by hand")
    if facts.rows_now == 0:
        return decision(False, "nothing to train on: cover_type has no rows yet")
    if facts.champion_version is None:
        return decision(True, f"no champion yet; {facts.rows_now:,} rows to train on")
    version, drift = facts.champion_version, facts.drift
    if drift is None:
        drift_text = f"no drift report against champion v{version} yet"
    else:
        verdict = "drift" if drift.dataset_drift else "no drift"
        comparison = "≥" if drift.dataset_drift else "<"
        drift_text = (
            f"{verdict} in batch {drift.batch_number} ({drift.drifted_features} of "
            f"{drift.features} features drifted, share {drift.share:.2f} {comparison} "
            f"{drift.threshold:g})"
        )
    enough = facts.new_rows_percent >= facts.min_new_rows_percent
    rows_text = (
        f"{facts.new_rows:,} new rows since v{version}'s training are "
        f"{_percent(facts.new_rows_percent)} of the {facts.champion_rows:,} it read "
        f"({'≥' if enough else '<'} {facts.min_new_rows_percent:g}%)"
    )
    if drift is not None and drift.dataset_drift:
        return decision(True, f"{drift_text}; {rows_text}")
    if enough:
        return decision(True, f"{rows_text}; {drift_text}")
    return decision(False, f"{drift_text} and {rows_text}")


def _percent(value: float) -> str:
    return "all new" if value == float("inf") else f"{value:.0f}%"
