"""What the API reads of the holder: the model being served and the registry's state,
each turned into its response shape (`responses`) by one method."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from covertype.serve.answers import Answers
from covertype.serve.predictors import Predictor
from covertype.serve.responses import (
    ChallengerInfo,
    HoldoutMetrics,
    ModelInfo,
    ModelSummary,
    RegistryStatus,
    Reproducibility,
    ServingCostInfo,
    ShadowFigures,
)
from covertype.serve.serving_cost import ServingCost


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ServedModel:
    name: str
    alias: str
    version: str
    run_id: str
    tags: dict[str, str]
    source: str  # FROM_REGISTRY, FROM_CACHE or FROM_MEMORY
    loaded_at: str
    predictor: Predictor
    predictor_note: str | None  # why a faster predictor does not serve
    answers: Answers = field(repr=False)
    budget_us: float = 0.0  # the API's COVERTYPE_SERVE_BUDGET_US, shown beside the cost

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def summary(self) -> ModelSummary:
        return ModelSummary.model_validate(self, from_attributes=True)

    def info(self, registry: RegistryStatus) -> ModelInfo:
        tags = self.tags

        def number(key: str) -> float | None:
            try:
                return float(tags[key])
            except (KeyError, ValueError):
                return None

        rows = number("trained_rows")
        return ModelInfo(
            **self.summary().model_dump(),
            run_id=self.run_id or tags.get("run_id", ""),
            family=tags.get("family"),
            metrics=HoldoutMetrics(
                holdout_accuracy=number("holdout_accuracy"),
                holdout_macro_f1=number("holdout_macro_f1"),
            ),
            trained_rows=None if rows is None else int(rows),
            trained_batches=tags.get("trained_batches"),
            trained_at=tags.get("trained_at"),
            gate_decision=tags.get("gate.decision"),
            reproducibility=self.reproducibility(),
            serving_cost=self.serving_cost(),
            predictor=self.predictor.kind,
            predictor_note=self.predictor_note,
            fast_path_note=self.predictor_note if self.predictor.kind == "pipeline" else None,
            registry=registry,
        )

    def challenger_info(self, shadow: ShadowFigures) -> ChallengerInfo:
        """This version as the challenger beside the champion, with its shadow figures."""
        return ChallengerInfo(
            version=self.version,
            alias=self.alias,
            run_id=self.run_id or self.tags.get("run_id", ""),
            family=self.tags.get("family"),
            loaded_at=self.loaded_at,
            predictor=self.predictor.kind,
            serving_cost=self.serving_cost(),
            shadow=shadow,
        )

    @property
    def cost(self) -> ServingCost | None:
        return ServingCost.from_tags(self.tags)

    def serving_cost(self) -> ServingCostInfo | None:
        cost, budget_us = self.cost, self.budget_us
        if cost is None:
            return None
        return ServingCostInfo(
            single_row_us=cost.single_row_us,
            single_row_p90_us=cost.single_row_p90_us,
            batch_row_us=cost.batch_row_us,
            measured_with=cost.predictor,
            budget_us=budget_us,
            within_budget=cost.within(budget_us),
        )

    def reproducibility(self) -> Reproducibility | None:
        tags = self.tags
        if "manifest.data_digest" not in tags:
            return None
        size = tags.get("manifest.snapshot_bytes", "")
        return Reproducibility(
            data_digest=tags["manifest.data_digest"],
            snapshot_bytes=int(size) if size.isdigit() else None,
            commit=tags.get("manifest.code.commit"),
            package_version=tags.get("manifest.code.package_version"),
            last_reproduced_at=tags.get("reproduced.at"),
            last_reproduced_from=tags.get("reproduced.from"),
            last_result=tags.get("reproduced.result"),
            last_summary=tags.get("reproduced.summary"),
        )


@dataclass
class RegistryState:
    uri: str
    reachable: bool | None = None  # None: not asked yet
    champion_version: str | None = None  # where the alias pointed at the last answer
    last_checked: str | None = None
    last_error: str | None = None
    failures: int = 0  # consecutive checks without an answer

    def status(self) -> RegistryStatus:
        return RegistryStatus.model_validate(self, from_attributes=True)
