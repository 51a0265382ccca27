"""What the API reads of the holder: the model being served and the registry's state,
each turned into its response shape (`shapes`) by one method."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from covertype import schema
from covertype.serve.fast import Predictor
from covertype.serve.shapes import (
    HoldoutMetrics,
    ModelInfo,
    ModelSummary,
    Prediction,
    RegistryStatus,
)


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
            predictor=self.predictor.kind,
            predictor_note=self.predictor_note,
            fast_path_note=self.predictor_note if self.predictor.kind == "pipeline" else None,
            registry=registry,
        )


class Answers:
    """The /predict answer's JSON, written by hand from parts encoded once per version
    (pydantic would cost more than the model): `Prediction`'s fields, in its order."""

    def __init__(self, version: str):
        self.heads = [
            Prediction(cover_type=k, cover_type_name=name, model_version=version)
            .model_dump_json(exclude={"probabilities"})
            .encode()[:-1]
            + b',"probabilities":'
            for k, name in enumerate(schema.COVER_TYPE_NAMES)
        ]
        self.keys = [json.dumps(name) + ":" for name in schema.COVER_TYPE_NAMES]

    def probabilities(self, proba) -> str:
        if proba is None:
            return "null"
        pairs = zip(self.keys, proba.tolist(), strict=True)
        return "{" + ",".join([key + repr(p) for key, p in pairs]) + "}"

    def one(self, label: int, proba) -> bytes:
        return self.heads[label] + self.probabilities(proba).encode() + b"}"

    def many(self, labels: list[int], proba) -> bytes:
        rows = [None] * len(labels) if proba is None else proba
        return b"[" + b",".join([self.one(k, p) for k, p in zip(labels, rows, strict=True)]) + b"]"


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
