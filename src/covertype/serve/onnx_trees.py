"""LightGBM's trees through ONNX Runtime: the served path's model for batches.

Measured in-process on the 3,500-tree champion (benchmarks/bench_predictors.py, the
benchmarks page of the docs): for a batch ONNX Runtime's tree ensemble costs a third of the
booster's time per row; for one row it costs more than LightGBM's single-row C API, which
therefore keeps single rows (`predictors.LightGBMModel`). lleaves and tl2cgen compile the
trees to machine code but took from 2.5 to over 10 minutes (LLVM, gcc) for this model on
two cores, at every new version. The conversion (onnxmltools) takes seconds and runs once
per version: the .onnx file is kept beside the model files in the API's cache.

ONNX's tree ensemble compares float32 inputs with float32 thresholds and sums float32
leaves, so its probabilities differ from LightGBM's in the seventh digit (ONNX_TOLERANCE);
a value within a float32 step of a threshold could go the other way.
`predictor_choice.compile_predictor` checks every converted model against its pipeline
before it serves, the booster otherwise.
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ONNX_TOLERANCE = 1e-5  # largest |Δp| accepted from float32 trees; measured ≤ 1e-6 on real rows


class OnnxTrees:
    """An LGBMClassifier's probabilities from an ONNX Runtime session with one thread.
    A session's run is thread-safe; each worker process holds its own."""

    def __init__(self, model_bytes: bytes, n_features: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            model_bytes, options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self.n_features = n_features

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(matrix, dtype=np.float32)
        return self.session.run(["probabilities"], {self.input: X})[0].astype(np.float64)


def convert(model, n_features: int) -> bytes:
    """The LGBMClassifier as an ONNX graph (probabilities as a tensor, no ZipMap)."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    graph = convert_lightgbm(
        model, initial_types=[("input", FloatTensorType([None, n_features]))], zipmap=False
    )
    return graph.SerializeToString()


def onnx_trees(model, n_features: int, cache_dir: Path | None = None) -> OnnxTrees:
    """The model's OnnxTrees; converted once per model version when `cache_dir` is given
    (the version's cache folder): workers of one API wait on a lock, the first converts."""
    if cache_dir is None:
        return OnnxTrees(convert(model, n_features), n_features)
    import onnxmltools

    path = cache_dir / f"lightgbm-onnxmltools-{onnxmltools.__version__}.onnx"
    try:
        lock = open(cache_dir / ".onnx.lock", "w")  # noqa: SIM115 (closed by `with` below)
    except OSError as error:  # a read-only model folder: convert in memory, every start
        log.warning("ONNX file not cached", extra={"folder": str(cache_dir), "error": str(error)})
        return OnnxTrees(convert(model, n_features), n_features)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            data = convert(model, n_features)
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            log.info("model converted to ONNX", extra={"file": str(path), "bytes": len(data)})
    return OnnxTrees(path.read_bytes(), n_features)
