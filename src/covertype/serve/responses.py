"""Every shape the inference API answers with, as the OpenAPI document shows it.

The routes declare these as response models; the holder and the served model build them
(the pre-encoded /predict answers too), so a field is named in one place. Docstrings here
become schema descriptions in the OpenAPI document: add one only to change the document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from covertype import schema

PROBABILITIES_EXAMPLE = (0.962, 0.031, 0.0, 0.0, 0.001, 0.0, 0.006)


class Prediction(BaseModel):
    cover_type: int = Field(ge=0, le=len(schema.COVER_TYPE_NAMES) - 1, examples=[0])
    cover_type_name: Literal[schema.COVER_TYPE_NAMES] = Field(  # type: ignore[valid-type]
        examples=["Spruce/Fir"]
    )
    model_version: str = Field(description="registry version that made this prediction")
    probabilities: dict[str, float] | None = Field(
        None,
        description="each class name's probability (they sum to 1); null for a model "
        "without probabilities (the svm family's LinearSVC)",
        examples=[dict(zip(schema.COVER_TYPE_NAMES, PROBABILITIES_EXAMPLE, strict=True))],
    )


class Contribution(BaseModel):
    field: str = Field(examples=["Elevation"])
    value: int | str = Field(description="the record's value of the field", examples=[3156])
    contribution: float = Field(
        description="the field's SHAP value: what it adds to the class's raw score (log-odds)",
        examples=[1.93],
    )
    text: str = Field(examples=["Elevation +1.93"])


class Explanation(Prediction):
    explained_class: str = Field(description="the class explained: the predicted one")
    base_value: float = Field(description="the class's raw score before any field (its mean)")
    contributions: list[Contribution] = Field(
        description="the largest contributions, by size, summed over the encoded and derived "
        "columns back to the 12 input fields (a derived feature split evenly over its fields)"
    )


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


class Reproducibility(BaseModel):
    """What made the version (its manifest's summary) and its last `covertype reproduce`."""

    data_digest: str | None = Field(
        description="digest of its training, validation and holdout rows"
    )
    snapshot_bytes: int | None = Field(description="bytes of its rows' snapshot (shared by digest)")
    commit: str | None
    package_version: str | None
    last_reproduced_at: str | None
    last_reproduced_from: str | None = Field(description="snapshot or db")
    last_result: str | None = Field(description="identical or differs")
    last_summary: str | None


class ServingCostInfo(BaseModel):
    """What one answer of the version cost when it was trained (serve.serving_cost)."""

    single_row_us: float = Field(description="median µs of a single-row answer, one thread")
    single_row_p90_us: float
    batch_row_us: float = Field(description="µs of one row of a batch")
    measured_with: str = Field(description="the predictor timed: fast or pipeline")
    budget_us: float = Field(description="this API's COVERTYPE_SERVE_BUDGET_US (0: none)")
    within_budget: bool


class ShadowFigures(BaseModel):
    """The challenger's shadow predictions in the worker that answered (one of
    COVERTYPE_SERVE_WORKERS; /metrics adds every worker's up)."""

    share: float = Field(
        description="COVERTYPE_SHADOW_SHARE: share of /predict and /predict/batch requests "
        "the challenger also predicts, off the request path",
        examples=[1.0],
    )
    records: int = Field(description="records it predicted beside the champion since loaded")
    agreement_rate: float | None = Field(
        description="share of those records it gave the champion's class; null before the "
        "first answer",
        examples=[0.97],
    )
    errors: int = Field(description="records it failed to predict (it raised)")
    dropped_requests: int = Field(
        description="sampled requests not shadowed: the queue (COVERTYPE_SHADOW_QUEUE) was full"
    )
    queued_requests: int = Field(description="requests waiting for its prediction now")


class ChallengerInfo(BaseModel):
    """The version waiting for its promotion, predicting beside the champion in shadow: its
    answers are recorded (the data DB's shadow_predictions), never returned."""

    version: str
    alias: str
    run_id: str
    family: str | None
    loaded_at: str
    predictor: str = Field(description="as the champion's `predictor`")
    serving_cost: ServingCostInfo | None = Field(
        description="measured at training; None for a version trained before costs were"
    )
    shadow: ShadowFigures


class ModelInfo(ModelSummary):
    run_id: str
    family: str | None
    metrics: HoldoutMetrics
    trained_rows: int | None
    trained_batches: str | None
    trained_at: str | None
    gate_decision: str | None
    reproducibility: Reproducibility | None = Field(
        description="None for a version trained before manifests"
    )
    serving_cost: ServingCostInfo | None = Field(
        description="measured at training; None for a version trained before costs were"
    )
    predictor: str = Field(
        description="onnx (NumPy encoder; LightGBM's single-row C API, ONNX Runtime's trees "
        "for batches), fast (NumPy encoder + the model's own trees) or pipeline (the logged "
        "pipeline on a DataFrame)"
    )
    predictor_note: str | None = Field(description="why a faster predictor does not serve")
    fast_path_note: str | None
    registry: RegistryStatus
    challenger: ChallengerInfo | None = Field(
        None, description="the challenger loaded beside the champion; null when there is none"
    )
