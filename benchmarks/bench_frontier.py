"""Accuracy against serving cost: a grid of each family on a fixed holdout of the real data,
each point's holdout macro F1 and accuracy against what one row costs to serve.

    .venv/bin/python benchmarks/bench_frontier.py --out DIR                  # 58k rows, ~8 min
    .venv/bin/python benchmarks/bench_frontier.py --train-rows all --grid small --out DIR
    .venv/bin/python benchmarks/bench_frontier.py --replot DIR/frontier-58000.json

Rows: `bench_train.rows` (COVERTYPE_SOURCE_DATA shuffled once; the first 20,000 rows are the
holdout, the next --train-rows the training rows). Each point: the family's own pipeline
(engineered features included) fitted by `families.fit_pipeline` with the search's seed on
every training row (the SVM on its 10,000-row sample) with --threads threads; holdout macro
F1 and accuracy; and its serving cost by `serving_cost.measure` (what the search logs for
every candidate; one thread): the median and p90 µs of a single-row answer and the µs a
row of a 300-row batch, through the predictor the API would serve it with, each the median
of --cost-repeats measurements on successive 300 holdout rows.
Grids (--grid): `full` LightGBM rounds {100, 200, 350} × leaves {31, 63, 127, 255} at a
learning rate of 0.1, with 0.14, 0.12 and 0.05 at sizes near the front, and 500 × 127 (the
champion `bench_serve` serves) as the anchor; extra trees {30, 60, 100} trees × max_depth
{16, 24, full} and 40 full-depth trees; the Nystroem SVM at 300, 600, 1000 components.
`small` (for all rows): 4 LightGBM points of the front and the anchor. `tiny`: 2 points.
Printed: a markdown table, the Pareto front (no point both cheaper in single-row µs and
better in macro F1), the best macro F1 and the default serving budget's point: the cheapest
single row within 0.5 pt of the best macro F1 (target: at most half the anchor's cost).
--out writes frontier-<rows>.json and frontier-<rows>.png (the front, single row and batch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from covertype import schema
from covertype.serve import serving_cost
from covertype.settings import Settings
from covertype.train import evaluate, families

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for bench_train
from bench_train import rows

WITHIN = 0.005  # the default budget: the cheapest point this close to the best macro F1
CLIP = 0.05  # the plot shows macro F1 down to this far below the best

# The search space's other parameters, at values inside it.
LIGHTGBM_REST = {"min_child_samples": 20, "colsample_bytree": 0.8, "reg_lambda": 1.0}
EXTRA_TREES_REST = {"max_features": 0.5, "min_samples_leaf": 1, "max_samples": 0.8}
SVM_REST = {"C": 5.0, "gamma": 0.08}


def lightgbm(rounds: int, leaves: int, rate: float = 0.1) -> tuple[str, dict]:
    params = {"n_estimators": rounds, "num_leaves": leaves, "learning_rate": rate}
    return "lightgbm", params | LIGHTGBM_REST


def extra_trees(trees: int, depth: int | None) -> tuple[str, dict]:
    return "extra_trees", {"n_estimators": trees, "max_depth": depth} | EXTRA_TREES_REST


def svm(components: int) -> tuple[str, dict]:
    return "svm", {"n_components": components} | SVM_REST


ANCHOR = lightgbm(500, 127)

GRIDS = {
    "full": [
        *(lightgbm(r, leaves) for r in (100, 200, 350) for leaves in (31, 63, 127, 255)),
        *(lightgbm(r, leaves, 0.14) for r, leaves in ((100, 127), (100, 255), (200, 63))),
        *(lightgbm(r, leaves, 0.14) for r, leaves in ((200, 127), (200, 255), (350, 63))),
        *(lightgbm(r, leaves, 0.05) for r, leaves in ((350, 127), (350, 255))),
        *(lightgbm(r, leaves, 0.12) for r in (150, 250) for leaves in (127, 255)),
        ANCHOR,
        *(extra_trees(t, d) for t in (30, 60, 100) for d in (16, 24, None)),
        extra_trees(40, None),
        *(svm(c) for c in (300, 600, 1000)),
    ],
    "small": [
        lightgbm(100, 255, 0.14),
        lightgbm(200, 127, 0.14),
        lightgbm(200, 255),
        lightgbm(350, 127, 0.05),
        ANCHOR,
    ],
    "tiny": [lightgbm(50, 31), extra_trees(10, 16)],
}


def label(family: str, params: dict) -> str:
    if family == "lightgbm":
        p = params
        return f"{p['n_estimators']} × {p['num_leaves']} @ {p['learning_rate']:g}"
    if family == "extra_trees":
        depth = params.get("max_depth") or "full"
        return f"{params['n_estimators']} trees, depth {depth}"
    return f"{params['n_components']} components"


def measure_point(family, params, train, holdout, seed: int, threads: int, repeats: int) -> dict:
    X, y = train[list(schema.FEATURES)], train[schema.LABEL].to_numpy()
    started = time.perf_counter()
    pipeline = families.fit_pipeline(family, params, X, y, seed, threads)
    fit_seconds = time.perf_counter() - started
    predicted = pipeline.predict(holdout[list(schema.FEATURES)])
    scores = evaluate.scores(holdout[schema.LABEL].to_numpy(), predicted, "holdout")
    fields = holdout[list(schema.FEATURES)]
    # each repeat on the next ROWS (300) holdout rows; the medians of the repeats
    rows_each = serving_cost.ROWS
    costs = [serving_cost.measure(pipeline, fields.iloc[k * rows_each :]) for k in range(repeats)]
    median = {
        name: statistics.median(getattr(c, name) for c in costs)
        for name in ("single_row_us", "single_row_p90_us", "batch_row_us")
    }
    return {
        "family": family,
        "params": params,
        "label": label(family, params),
        "macro_f1": scores["holdout_macro_f1"],
        "accuracy": scores["holdout_accuracy"],
        **median,
        "single_row_us_repeats": [c.single_row_us for c in costs],
        "predictor": costs[0].predictor,
        "fit_seconds": fit_seconds,
    }


def front(points: list[dict], cost: str = "single_row_us") -> list[dict]:
    """The points no other point beats on both: cheaper (or as cheap) and better."""
    ordered = sorted(points, key=lambda p: (p[cost], -p["macro_f1"]))
    kept, best = [], -1.0
    for point in ordered:
        if point["macro_f1"] > best:
            kept.append(point)
            best = point["macro_f1"]
    return kept


def budget_point(points: list[dict]) -> dict:
    """The cheapest single row within WITHIN of the best macro F1."""
    best = max(p["macro_f1"] for p in points)
    return min(
        (p for p in points if p["macro_f1"] >= best - WITHIN), key=lambda p: p["single_row_us"]
    )


def summarise(result: dict) -> None:
    points = result["points"]
    on_front = {id(p) for p in front(points)}
    best = max(points, key=lambda p: p["macro_f1"])
    budget = budget_point(points)
    print(
        "\n| family | parameters | holdout macro F1 | accuracy | single row µs | p90 µs "
        "| batch µs/row | fit s | |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
    )
    for p in sorted(points, key=lambda p: (p["family"], p["single_row_us"])):
        marks = [m for m, on in (("front", id(p) in on_front), ("best", p is best)) if on]
        marks += ["budget"] if p is budget else []
        print(
            f"| {p['family']} | {p['label']} | {p['macro_f1']:.4f} | {p['accuracy']:.4f} "
            f"| {p['single_row_us']:,.0f} | {p['single_row_p90_us']:,.0f} "
            f"| {p['batch_row_us']:,.1f} | {p['fit_seconds']:.1f} | {', '.join(marks)} |"
        )
    print("\nPareto front (single row):")
    for p in front(points):
        print(f"  {p['single_row_us']:8,.0f} µs  {p['macro_f1']:.4f}  {p['family']} {p['label']}")
    print(
        f"best macro F1: {best['family']} {best['label']}: {best['macro_f1']:.4f}, "
        f"{best['single_row_us']:,.0f} µs"
    )
    print(
        f"default budget point (cheapest within {WITHIN * 100:g} pt of the best): "
        f"{budget['family']} {budget['label']}: {budget['macro_f1']:.4f}, "
        f"{budget['single_row_us']:,.0f} µs a row (p90 {budget['single_row_p90_us']:,.0f})"
    )
    anchor = [p for p in points if (p["family"], p["params"]) == ANCHOR]
    if anchor:
        share = budget["single_row_us"] / anchor[0]["single_row_us"]
        print(f"  {share:.0%} of the anchor's {anchor[0]['single_row_us']:,.0f} µs (target ≤ 50%)")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    points = result["points"]
    best = max(points, key=lambda p: p["macro_f1"])
    budget = budget_point(points)
    colours = {"lightgbm": "tab:green", "extra_trees": "tab:brown", "svm": "tab:purple"}
    figure, axes = plt.subplots(1, 2, figsize=(13, 6.5), sharey=True)
    panels = (
        ("single_row_us", "single-row answer, µs (median)"),
        ("batch_row_us", "µs a row in a 300-row batch"),
    )
    for ax, (cost, title) in zip(axes, panels, strict=True):
        for family, colour in colours.items():
            mine = [p for p in points if p["family"] == family]
            if mine:
                ax.scatter(
                    [p[cost] for p in mine],
                    [p["macro_f1"] for p in mine],
                    c=colour,
                    label=family,
                    s=28,
                    alpha=0.8,
                )
        edge = front(points, cost)
        ax.step(
            [p[cost] for p in edge],
            [p["macro_f1"] for p in edge],
            where="post",
            color="black",
            lw=1,
            label="Pareto front",
        )
        for i, p in enumerate(edge):
            ax.annotate(
                p["label"],
                (p[cost], p["macro_f1"]),
                xytext=(-4, 6) if i % 2 else (5, -11),
                ha="right" if i % 2 else "left",
                textcoords="offset points",
                fontsize=7,
                color="dimgrey",
            )
        marked = {id(best): "best", id(budget): "budget"}
        if best is budget:
            marked[id(best)] = "best and budget"
        for p in (best, budget):
            ax.scatter([p[cost]], [p["macro_f1"]], facecolors="none", edgecolors="red", s=90)
            ax.annotate(
                marked[id(p)],
                (p[cost], p["macro_f1"]),
                xytext=(0, -22),
                ha="center",
                textcoords="offset points",
                fontsize=8,
                color="red",
            )
        ax.axhline(best["macro_f1"] - WITHIN, color="red", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(title)
        ax.grid(True, which="both", alpha=0.3)
    low = max(min(p["macro_f1"] for p in points), best["macro_f1"] - CLIP) - 0.005
    below = sum(p["macro_f1"] < low for p in points)
    axes[0].set_ylim(low, best["macro_f1"] + 0.01)
    axes[0].set_ylabel("holdout macro F1" + (f" ({below} points below the axis)" if below else ""))
    axes[0].legend(fontsize=8, loc="upper left")
    figure.suptitle(
        f"Accuracy against serving cost: {result['train_rows']:,} training rows, "
        f"{result['holdout_rows']:,}-row holdout ({result['date']})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-rows", default="58000", help="a number, or 'all'")
    parser.add_argument("--grid", choices=tuple(GRIDS), default="full")
    parser.add_argument("--threads", type=int, default=2, help="of each fit")
    parser.add_argument("--cost-repeats", type=int, default=3, help="serving_cost.measure runs")
    parser.add_argument("--out", type=Path, help="folder for frontier-<rows>.json and .png")
    parser.add_argument("--replot", type=Path, help="a JSON of an earlier run: table and PNG")
    args = parser.parse_args()
    if args.replot:
        result = json.loads(args.replot.read_text())
        summarise(result)
        plot(result, args.replot.with_suffix(".png"))
        print(f"\nwrote {args.replot.with_suffix('.png')}")
        return

    settings = Settings()
    seed = settings.train.seed
    train, holdout = rows(settings, None if args.train_rows == "all" else int(args.train_rows))
    grid = GRIDS[args.grid]
    print(
        f"holdout {len(holdout)} rows, training {len(train)} rows ({settings.source.data}); "
        f"{len(grid)} points, fits with {args.threads} threads, seed {seed}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    result = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "grid": args.grid,
        "threads": args.threads,
        "cost_repeats": args.cost_repeats,
        "load_before": os.getloadavg(),
        "points": [],
    }
    started = time.perf_counter()
    for i, (family, params) in enumerate(grid, 1):
        point = measure_point(family, params, train, holdout, seed, args.threads, args.cost_repeats)
        result["points"].append(point)
        print(
            f"  [{i}/{len(grid)}] {family} {point['label']}: macro F1 {point['macro_f1']:.4f}, "
            f"{point['single_row_us']:,.0f} µs a row, batch {point['batch_row_us']:,.1f} µs/row "
            f"(fit {point['fit_seconds']:.1f} s; {time.perf_counter() - started:.0f} s in all)",
            flush=True,
        )
    result["load_after"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - started
    print(f"load average {result['load_before'][0]:.1f} → {result['load_after'][0]:.1f}")
    summarise(result)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-frontier-"))
    out.mkdir(parents=True, exist_ok=True)
    name = f"frontier-{len(train)}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    plot(result, out / f"{name}.png")
    print(f"\nwrote {out / name}.json and .png ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
