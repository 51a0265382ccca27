"""One-row LightGBM predict cost of each candidate predictor, in-process, side by side.

    .venv/bin/python benchmarks/bench_predictors.py --model-dir DIR [--rows 10000]

DIR is an MLflow model folder of a LightGBM pipeline (e.g. the API's model cache,
$COVERTYPE_HOME/serve-cache/<name>/<version>). The candidates, each measured on the same
encoded real rows (COVERTYPE_SOURCE_DATA), those not installed reported as such:

  booster     Booster.predict(num_threads=1): builds a predictor per call
  c-api fast  LGBM_BoosterPredictForMatSingleRowFast, configuration prepared once
  lleaves     the model compiled to machine code by LLVM, not inlined (pip: lleaves,
              llvmlite 0.44)
  tl2cgen     treelite → C → a shared library by the system's C compiler (pip: tl2cgen)
  onnxruntime onnxmltools' conversion (zipmap off), one intra-op thread (float32 inputs)

Per candidate: preparation time (compile/convert), one-row median µs over 2,000 calls,
µs per row when 2, 4 or 8 rows go in one call (what merging concurrent /predict calls into
one, micro-batching, could gain: 8 connections on 2 workers hold 4 requests per worker),
batch of 1,000 rows µs per row, and parity with the booster on `--rows` rows (classes
equal; largest probability difference).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from covertype import dataset, schema
from covertype.serve.lightgbm_single_row import SingleRow
from covertype.serve.model_files import load_pipeline
from covertype.serve.predictors import FastPredictor
from covertype.settings import Settings

MICRO = (2, 4, 8)  # rows a worker could merge: 8 connections over 2 workers hold 4 each


def median_us(call, rows: np.ndarray, n: int = 2000, k: int = 1) -> float:
    """Median µs per row of `call` on `k` consecutive rows at a time."""
    for i in range(50):
        call(rows[i % len(rows) : i % len(rows) + k])
    times = []
    for i in range(n):
        start = i * k % (len(rows) - k)
        block = rows[start : start + k]
        started = time.perf_counter()
        call(block)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6 / k


def candidates(model, booster, n_features: int, tmp: Path):
    """(name, prepare → (one-row proba, batch proba)) for every candidate."""

    def plain():
        def one(x):
            return booster.predict(x, num_threads=1)

        return one, one

    def c_api():
        single = SingleRow(booster, n_features)
        return single.predict, lambda x: booster.predict(x, num_threads=1)

    def lleaves_():
        import lleaves

        path = tmp / "model.txt"
        booster.save_model(str(path))
        compiled = lleaves.Model(model_file=str(path))
        # Inlined (lleaves' default), 3,500 trees had not compiled after 12 min on 2 cores.
        compiled.compile(
            cache=str(tmp / "lleaves.o"), finline=False, fblocksize=booster.num_trees()
        )

        def one(x):
            return compiled.predict(x, n_jobs=1)

        return one, one

    def tl2cgen_():
        import tl2cgen
        import treelite

        tree_model = treelite.frontend.from_lightgbm(booster)
        lib = tmp / "tl2cgen.so"
        params = {"parallel_comp": 8}
        tl2cgen.export_lib(tree_model, toolchain="gcc", libpath=str(lib), params=params)
        predictor = tl2cgen.Predictor(str(lib), nthread=1)

        def one(x):
            return predictor.predict(tl2cgen.DMatrix(x)).reshape(len(x), -1)

        return one, one

    def onnx_():
        import onnxruntime
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        onx = convert_lightgbm(
            model, initial_types=[("input", FloatTensorType([None, n_features]))], zipmap=False
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            onx.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

        def one(x):
            return session.run(["probabilities"], {"input": x.astype(np.float32)})[0]

        return one, one

    return [
        ("booster", plain),
        ("c-api fast", c_api),
        ("lleaves", lleaves_),
        ("tl2cgen", tl2cgen_),
        ("onnxruntime", onnx_),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--rows", type=int, default=10_000, help="real rows for parity")
    parser.add_argument("--only", help="comma-separated candidate names")
    args = parser.parse_args()

    pipeline = load_pipeline(Path(args.model_dir))
    fast = FastPredictor(pipeline)
    model = pipeline.steps[-1][1]
    booster = model.booster_
    frame = dataset.load_dataset(Settings()).iloc[-args.rows :]
    records = [
        {k: (int(v) if k in schema.NUMERIC else str(v)) for k, v in row.items()}
        for row in frame[list(schema.FEATURES)].to_dict("records")
    ]
    X = fast.encode(records)
    truth = booster.predict(X, num_threads=1)
    encode_us = median_us(lambda _: fast.encode(records[:1]), X)
    print(
        f"model: {booster.num_trees()} trees, {X.shape[1]} features; encoder (record → row) "
        f"{encode_us:.0f} µs; parity on {len(X):,} real rows",
        file=sys.stderr,
    )
    wanted = set(args.only.split(",")) if args.only else None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, prepare in candidates(model, booster, X.shape[1], Path(tmp)):
            if wanted and name not in wanted:
                continue
            started = time.perf_counter()
            try:
                one, many = prepare()
            except ImportError as error:
                results.append((name, f"not installed ({error.name})"))
                continue
            prepared = time.perf_counter() - started
            single = median_us(one, X)
            micro = " / ".join(f"{median_us(many, X, 500, k):,.0f}" for k in MICRO)
            started = time.perf_counter()
            batch = np.vstack([many(X[i : i + 1000]) for i in range(0, len(X), 1000)])
            per_row = (time.perf_counter() - started) / len(X) * 1e6
            ones = np.vstack([one(X[i : i + 1]) for i in range(200)])
            same = int((batch.argmax(1) == truth.argmax(1)).sum())
            diff = float(max(np.abs(batch - truth).max(), np.abs(ones - truth[:200]).max()))
            results.append(
                (
                    name,
                    f"{prepared:.1f} s | {single:,.1f} | {micro} | {per_row:.1f} | "
                    f"{same:,}/{len(X):,} | {diff:.1e}",
                )
            )
            print(name, results[-1][1], file=sys.stderr, flush=True)
    print(
        "\n| candidate | prepare | one row µs | 2 / 4 / 8 rows µs/row | batch µs/row "
        "| same class | max Δp |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, text in results:
        cells = text if "|" in text else f"{text} | | | | |"
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
