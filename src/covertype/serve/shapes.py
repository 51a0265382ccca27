"""Every shape the inference API answers with, as the OpenAPI document shows it.

The routes declare these as response models; the holder and the served model build them
(the pre-encoded /predict answers too), so a field is named in one place. Docstrings here
become schema descriptions in the OpenAPI document: add one only to change the document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from covertype import schema


class Prediction(BaseModel):
    cover_type: int = Field(ge=0, le=len(schema.COVER_TYPE_NAMES) - 1, examples=[0])
    cover_type_name: Literal[schema.COVER_TYPE_NAMES] = Field(  # type: ignore[valid-type]
        examples=["Spruce/Fir"]
    )
    model_version: str = Field(description="registry version that made this prediction")


class Problem(BaseModel):
    """One thing wrong with the request: where, and for a field what is allowed."""

    loc: list[str | int] = Field(examples=[["body", "Elevation"]])
    msg: str = Field(
        examples=[
            "Elevation: 999 is out of range; allowed: a whole number of metres from 1000 to 4500"
        ]
    )
    type: str = Field(examples=["invalid_field"])
    field: str | None = None
    input: Any = None
    problem: str | None = None
    allowed: str | None = None


class Problems(BaseModel):
    detail: list[Problem]


class Detail(BaseModel):
    detail: str


class Health(BaseModel):
    status: str


class ModelSummary(BaseModel):
    name: str
    version: str
    alias: str
    loaded_at: str
    source: str


class RegistryStatus(BaseModel):
    uri: str
    reachable: bool | None
    champion_version: str | None
    last_checked: str | None
    last_error: str | None


class Readiness(BaseModel):
    ready: bool
    model: ModelSummary | None = None
    registry: RegistryStatus
    detail: str | None = None


class HoldoutMetrics(BaseModel):
    holdout_accuracy: float | None
    holdout_macro_f1: float | None


class ModelInfo(ModelSummary):
    run_id: str
    family: str | None
    metrics: HoldoutMetrics
    trained_rows: int | None
    trained_batches: str | None
    trained_at: str | None
    gate_decision: str | None
    predictor: str
    fast_path_note: str | None
    registry: RegistryStatus
