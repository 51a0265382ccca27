"""Which predictor serves a pipeline, checked before it does.

Every compiled predictor is checked against its pipeline on probe rows (the encoded
matrices equal, the classes equal, the probabilities within a tolerance) before it serves.
A step it does not know or a disagreement means the next one down serves: "onnx" (ONNX
Runtime for batches) → "fast" (the booster for batches) → the pipeline itself, so any
model the training registers is served correctly, the known ones fast; `/model` says
which one serves and why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from covertype import schema
from covertype.serve.encoder import Record, Unsupported
from covertype.serve.predictors import (
    FastPredictor,
    LightGBMModel,
    PipelinePredictor,
    Predictor,
    records_frame,
)

log = logging.getLogger(__name__)

PROBE_ROWS = 512
SINGLE_ROW_PROBES = 64
EXACT = 1e-6  # |Δp| allowed of a predictor that runs the model's own float64 arithmetic
PREDICTORS = ("auto", "fast", "pipeline")  # COVERTYPE_SERVE_PREDICTOR


def probe_records(n: int = PROBE_ROWS, seed: int = 0) -> list[dict]:
    """Valid records spread over every range and every category (fixed seed)."""
    rng = np.random.default_rng(seed)
    numeric = {f.name: rng.integers(f.low, f.high + 1, n).tolist() for f in schema.NUMERIC_FIELDS}
    wilderness = [schema.WILDERNESS_AREAS[i % len(schema.WILDERNESS_AREAS)] for i in range(n)]
    soil = [schema.SOIL_TYPES[i % len(schema.SOIL_TYPES)] for i in range(n)]
    rng.shuffle(soil)
    return [
        {
            **{name: numeric[name][i] for name in schema.NUMERIC},
            **dict(zip(schema.CATEGORICAL, (wilderness[i], soil[i]), strict=True)),
        }
        for i in range(n)
    ]


def disagreement(
    fast: FastPredictor, pipeline, records: Sequence[Record], tolerance: float = EXACT
) -> str | None:
    """Why `fast` is not the pipeline on `records` (classes, probabilities within
    `tolerance`), or None when it is."""
    truth = PipelinePredictor(pipeline)
    frame = records_frame(records)
    expected = np.asarray(pipeline[:2].transform(frame), dtype=np.float64)
    encoded = fast.encode(records)
    if encoded.shape != expected.shape:
        return f"encoded shape {encoded.shape} != pipeline's {expected.shape}"
    if not np.array_equal(encoded, expected):
        rows = int((encoded != expected).any(axis=1).sum())
        return f"encoded values differ from the pipeline's on {rows} of {len(records)} rows"
    labels, proba = truth.classify_many(records)
    many, many_proba = fast.classify_many(records)
    if many != labels:
        differ = sum(a != b for a, b in zip(many, labels, strict=True))
        return f"batch predictions differ from the pipeline's on {differ} of {len(records)} rows"
    single = [fast.classify_one(r) for r in records[:SINGLE_ROW_PROBES]]
    if [label for label, _ in single] != labels[:SINGLE_ROW_PROBES]:
        return "one-row predictions differ from the pipeline's"
    if (proba is None) != (many_proba is None):
        return "probabilities: one of the pipeline and the fast path has none"
    if proba is not None and many_proba is not None:
        single_proba = [p for _, p in single if p is not None]
        if len(single_proba) != len(single):
            return "probabilities: one of the pipeline and the fast path has none"
        ones = np.vstack(single_proba)
        gap = max(np.abs(many_proba - proba).max(), np.abs(ones - proba[: len(ones)]).max())
        if gap > tolerance:
            rows = int((np.abs(many_proba - proba) > tolerance).any(axis=1).sum())
            return (
                f"probabilities differ from the pipeline's by up to {gap:.1e} (> {tolerance:g}) "
                f"on {rows} of {len(records)} rows"
            )
    return None


def compile_predictor(
    pipeline,
    extra: Sequence[Record] = (),
    prefer: str = "auto",
    cache_dir: Path | None = None,
    onnx_tolerance: float | None = None,
) -> tuple[Predictor, str | None]:
    """The fastest predictor for `pipeline` that reproduces it on the probe rows (and
    `extra`): ONNX trees, the fast path, or the pipeline itself (`prefer` may skip the
    first, or both); plus why a faster one does not serve. `onnx_tolerance`: the largest
    |Δp| accepted from the ONNX trees [onnx_trees.ONNX_TOLERANCE]."""
    if prefer == "pipeline":
        return PipelinePredictor(pipeline), "COVERTYPE_SERVE_PREDICTOR=pipeline"
    records = [*extra, *probe_records()]
    try:
        fast = FastPredictor(pipeline)
        reason = disagreement(fast, pipeline, records)
    except Unsupported as error:
        reason = str(error)
    except Exception as error:  # a step that fails on NumPy input: the pipeline serves
        reason = f"{type(error).__name__}: {error}"
    if reason is not None:
        log.warning("fast path not used; the pipeline serves", extra={"reason": reason})
        return PipelinePredictor(pipeline), f"fast path not used: {reason}"
    if not isinstance(fast.model, LightGBMModel):
        return fast, None
    if prefer == "fast":
        return fast, "COVERTYPE_SERVE_PREDICTOR=fast"
    reason = _attach_onnx(fast, pipeline, records, cache_dir, onnx_tolerance)
    if reason is not None:
        log.warning("ONNX trees not used; the booster serves", extra={"reason": reason})
        return fast, f"onnx not used: {reason}"
    return fast, None


def ready_predictor(
    pipeline, prefer: str = "auto", cache_dir: Path | None = None
) -> tuple[Predictor, str | None]:
    """What serves `pipeline`: `compile_predictor` checked on the two real example records
    too, then warmed up with one answer (a pipeline that cannot answer fails here, before
    anything serves it)."""
    from covertype.serve.records import EXAMPLE, EXAMPLE_2

    examples = [schema.validate_record(EXAMPLE), schema.validate_record(EXAMPLE_2)]
    predictor, note = compile_predictor(
        pipeline, extra=examples, prefer=prefer, cache_dir=cache_dir
    )
    predictor.classify_one(examples[0])  # warm up before the first request
    return predictor, note


def _attach_onnx(fast: FastPredictor, pipeline, records, cache_dir, tolerance) -> str | None:
    """ONNX Runtime's trees in `fast`, or why not (they stay detached then)."""
    try:
        from covertype.serve.onnx_trees import ONNX_TOLERANCE, onnx_trees

        fast.model.trees = onnx_trees(fast.model.model, fast.model.n_features, cache_dir)
        limit = ONNX_TOLERANCE if tolerance is None else tolerance
        reason = disagreement(fast, pipeline, records, limit)
    except ImportError as error:
        reason = f"{error.name} is not installed"
    except Exception as error:  # a conversion or a runtime that fails: the booster serves
        reason = f"{type(error).__name__}: {error}"
    if reason is not None:
        fast.model.trees = None
    return reason
