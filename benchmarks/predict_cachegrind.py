"""The cache misses of a one-row predict, counted: LightGBM's one-row C API under cachegrind.

    .venv/bin/python benchmarks/predict_cachegrind.py prepare /tmp/cg            # ~1 min
    .venv/bin/python benchmarks/predict_cachegrind.py prepare /tmp/cg-small --rounds 20 --leaves 31
    .venv/bin/python benchmarks/predict_cachegrind.py measure /tmp/cg/booster.txt \\
        /tmp/cg/rows.json --small /tmp/cg-small/booster.txt                      # ~15 min

`prepare DIR` fits the frontier's anchor (`bench_frontier`: LightGBM, 500 rounds × 127
leaves × 7 classes, the 3,500 trees `bench_serve` serves) on the 58k training rows of
`bench_train.rows` (COVERTYPE_SOURCE_DATA) and writes DIR/booster.txt and DIR/rows.json,
`--rows` holdout rows encoded by the served encoder (the same files `predict_contention.py`
takes).

`measure` runs a worker under `valgrind --tool=cachegrind` with this machine's caches
(`--I1`, `--D1`, `--LL` from /sys/devices/system/cpu/cpu0/cache, or given; cachegrind
simulates a first level and a last level, not the L2 between them) for each case:
  one copy       one booster, predicts back to back (the unloaded case);
  two copies     two boosters loaded from the same file in one process, one predict each in
                 turn (the shadow's second copy; roughly, two workers sharing the L3);
  one copy, LL/2 one booster with the last level halved (what each of two processes gets
                 when both predict at once);
  the L2 as LL   one copy and two with the L2's geometry (`--L2`) as the last level: the
                 misses that leave the L2 (hits of the L3 mostly, at `--l3-ns`);
  small          `--small BOOSTER`, one copy and two, for contrast (a model that fits).
Each predict is `SingleRow.predict` (covertype.serve.lightgbm_single_row, one thread), as
served, on the rows in turn after `--warmup` predicts. Each case runs twice, with N and 2N
predicts (`--predicts`); the difference over N is the cost of one predict, without Python's
start, the imports or the model's loading. Printed per predict: instructions, D1 misses, LL
misses (and the share of those in LightGBM's own functions), the LL misses' cost at
`--dram-ns` (80–100 ns of DRAM latency a miss; `--l3-ns` for the L2 as LL; serialised: an
upper bound, as the core overlaps some), beside the µs per predict measured natively (no
valgrind) by the same worker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
DRAM_NS = (80.0, 100.0)  # a miss of the last level: DRAM's latency
L3_NS = (10.0, 15.0)  # a miss of the L2 that hits the L3 (~40–55 cycles at 3.5–4 GHz)


# --- the model and its rows ------------------------------------------------------------------


def prepare(out: Path, rounds: int, leaves: int, n_rows: int, threads: int) -> None:
    """Fit the frontier's LightGBM on bench_train's 58k training rows; write the booster and
    `n_rows` holdout rows as the served encoder encodes them."""
    sys.path.insert(0, str(HERE))
    from bench_frontier import LIGHTGBM_REST
    from bench_train import rows
    from covertype import schema
    from covertype.serve.predictors import FastPredictor
    from covertype.settings import Settings
    from covertype.train import families

    settings = Settings()
    train, holdout = rows(settings, 58_000)
    params = {"n_estimators": rounds, "num_leaves": leaves, "learning_rate": 0.1}
    started = time.perf_counter()
    pipeline = families.fit_pipeline(
        "lightgbm",
        params | LIGHTGBM_REST,
        train[list(schema.FEATURES)],
        train[schema.LABEL].to_numpy(),
        settings.train.seed,
        threads,
    )
    predictor = FastPredictor(pipeline)
    fields = holdout[list(schema.FEATURES)].head(n_rows)
    records = [schema.validate_record(r) for r in fields.to_dict("records")]
    out.mkdir(parents=True, exist_ok=True)
    predictor.model.booster.save_model(str(out / "booster.txt"))
    (out / "rows.json").write_text(json.dumps(predictor.encode(records).tolist()))
    print(
        f"{out}/booster.txt ({predictor.model.booster.num_trees():,} trees, "
        f"{(out / 'booster.txt').stat().st_size / 2**20:.1f} MiB) and rows.json "
        f"({len(records)} rows) in {time.perf_counter() - started:.0f} s"
    )


# --- the worker: what runs under valgrind ----------------------------------------------------


def worker(booster_file: str, rows_file: str, copies: int, predicts: int, warmup: int) -> None:
    """Load `copies` boosters, `warmup` predicts, then `predicts` predicts (the copies in
    turn, the rows in turn). With `predicts` < 0: time -predicts of them natively instead."""
    import lightgbm

    from covertype.serve.lightgbm_single_row import SingleRow

    with open(rows_file) as file:
        rows = [np.asarray([r], dtype=np.float64) for r in json.load(file)]
    singles = [
        SingleRow(lightgbm.Booster(model_file=booster_file), rows[0].shape[1])
        for _ in range(copies)
    ]

    def run(n: int) -> None:
        for i in range(n):
            singles[i % copies].predict(rows[i % len(rows)])

    run(warmup)
    if predicts >= 0:
        run(predicts)
        return
    passes = []
    for _ in range(3):  # the cheapest of 3 passes, as serving_cost does
        started = time.perf_counter()
        run(-predicts)
        passes.append((time.perf_counter() - started) / -predicts * 1e6)
    print(json.dumps({"us": min(passes), "passes": passes}))


# --- cachegrind ------------------------------------------------------------------------------


def machine_caches() -> dict[str, str]:
    """cachegrind's --I1, --D1 and --LL (size,associativity,line bytes) of cpu0's caches:
    level 1 instruction and data, the last level, and the L2 (to simulate as a last level)."""
    found: dict[tuple[int, str], str] = {}
    for index in sorted(CACHE.glob("index*")):

        def read(name: str, index: Path = index) -> str:
            return (index / name).read_text().strip()

        size = read("size")
        size_bytes = int(size[:-1]) * 1024 if size.endswith("K") else int(size)
        geometry = f"{size_bytes},{read('ways_of_associativity')},{read('coherency_line_size')}"
        found[(int(read("level")), read("type"))] = geometry
    last = max(level for level, _ in found)
    return {
        "I1": found[(1, "Instruction")],
        "D1": found[(1, "Data")],
        "LL": found[(last, "Unified")],
        "L2": found.get((2, "Unified"), ""),
    }


def halved(geometry: str) -> str:
    size, ways, line = geometry.split(",")
    return f"{int(size) // 2},{ways},{line}"


def kib(geometry: str) -> str:
    size, ways, line = (int(v) for v in geometry.split(","))
    amount = f"{size // 2**20} MiB" if size >= 2**20 else f"{size // 1024} KiB"
    return f"{amount}, {ways}-way, {line} B lines"


@dataclass
class Counts:
    instructions: int
    d1_misses: int
    ll_misses: int  # instruction and data
    ll_misses_lightgbm: int  # data, in functions of LightGBM's own

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.instructions - other.instructions,
            self.d1_misses - other.d1_misses,
            self.ll_misses - other.ll_misses,
            self.ll_misses_lightgbm - other.ll_misses_lightgbm,
        )


def parse(out_file: Path) -> Counts:
    """A cachegrind.out file's totals, and the data LL misses in LightGBM's functions."""
    events: list[str] = []
    totals: list[int] = []
    lightgbm_dl = 0
    in_lightgbm = False
    for line in out_file.read_text(errors="replace").splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:"):
            totals = [int(v) for v in line.split()[1:]]
        elif line.startswith("fn="):
            name = line[3:]
            in_lightgbm = "LightGBM" in name or "LGBM_" in name
        elif in_lightgbm and line[:1].isdigit():
            values = [int(v) for v in line.split()[1:]]
            values += [0] * (len(events) - len(values))
            lightgbm_dl += values[events.index("DLmr")] + values[events.index("DLmw")]
    total = dict(zip(events, totals, strict=True))
    return Counts(
        instructions=total["Ir"],
        d1_misses=total["D1mr"] + total["D1mw"],
        ll_misses=total["ILmr"] + total["DLmr"] + total["DLmw"],
        ll_misses_lightgbm=lightgbm_dl,
    )


def worker_command(booster: str, rows: str, copies: int, predicts: int, warmup: int) -> list:
    return [
        sys.executable,
        __file__,
        "worker",
        booster,
        rows,
        "--copies",
        str(copies),
        "--predicts",
        str(predicts),
        "--warmup",
        str(warmup),
    ]


WORKER_ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def cachegrind(caches: dict[str, str], command: list, out_file: Path) -> Counts:
    subprocess.run(
        [
            "setarch",  # no address randomisation: N and 2N predicts differ by those only
            "-R",
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=yes",
            f"--I1={caches['I1']}",
            f"--D1={caches['D1']}",
            f"--LL={caches['LL']}",
            f"--cachegrind-out-file={out_file}",
            "--log-file=" + str(out_file.with_suffix(".log")),
            *command,
        ],
        check=True,
        env=WORKER_ENV,
    )
    return parse(out_file)


@dataclass
class Case:
    name: str
    booster: str
    copies: int
    caches: dict[str, str]
    predicts: int
    latency: tuple[float, float]  # ns a miss of the simulated LL costs on this machine
    beyond: str  # where such a miss is served: "DRAM" or "L3"


def measure(args: argparse.Namespace) -> None:
    caches = machine_caches()
    given = (("I1", args.I1), ("D1", args.D1), ("LL", args.LL), ("L2", args.L2))
    caches |= {k: v for k, v in given if v}
    half = caches | {"LL": halved(caches["LL"])}
    l2 = caches | {"LL": caches["L2"]}
    n, k = args.predicts, args.small_predicts
    dram, l3 = (tuple(args.dram_ns), "DRAM"), (tuple(args.l3_ns), "L3")
    cases = [
        Case("one copy", args.booster, 1, caches, n, *dram),
        Case("two copies, a predict each in turn", args.booster, 2, caches, n, *dram),
        Case("one copy, LL halved", args.booster, 1, half, n, *dram),
    ]
    if caches["L2"]:
        cases += [
            Case("one copy, the L2 as LL", args.booster, 1, l2, n, *l3),
            Case("two copies in turn, the L2 as LL", args.booster, 2, l2, n, *l3),
        ]
    if args.small:
        cases += [
            Case("small: one copy", args.small, 1, caches, k, *dram),
            Case("small: two copies in turn", args.small, 2, caches, k, *dram),
        ]
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    small = f" ({k} and {2 * k} of the small model)" if args.small else ""
    l2_text = kib(caches["L2"]) if caches["L2"] else "unknown"
    print(
        f"{datetime.now():%Y-%m-%d %H:%M}, {version.strip()}, cachegrind with "
        f"I1 {kib(caches['I1'])}; D1 {kib(caches['D1'])}; LL {kib(caches['LL'])} "
        f"(halved: {kib(half['LL'])}; the L2: {l2_text}); {n} and {2 * n} predicts{small} "
        f"after {args.warmup}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for booster in dict.fromkeys(case.booster for case in cases):
        size = Path(booster).stat().st_size / 2**20
        print(f"  {booster}: {size:.1f} MiB of model text", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="predict-cachegrind-"))
    results = []
    for i, case in enumerate(cases):
        started = time.perf_counter()
        counts = []
        for predicts in (case.predicts, 2 * case.predicts):
            command = worker_command(case.booster, args.rows, case.copies, predicts, args.warmup)
            counts.append(cachegrind(case.caches, command, scratch / f"cg.{i}.{predicts}.out"))
        each = counts[1] - counts[0]  # case.predicts predicts
        native = None
        if case.caches["LL"] == caches["LL"]:  # the machine's own LL: measurable natively
            command = worker_command(case.booster, args.rows, case.copies, -2000, 200)
            timed = subprocess.run(
                command, env=WORKER_ENV, capture_output=True, text=True, check=True
            )
            native = json.loads(timed.stdout)["us"]
        results.append((case, each, native))
        print(
            f"  {case.name}: {time.perf_counter() - started:.0f} s "
            f"(without predicts: {counts[0].instructions - each.instructions:,} instructions, "
            f"{counts[0].ll_misses - each.ll_misses:,} LL misses)",
            flush=True,
        )
    table(results)
    print(f"\ncachegrind's files in {scratch}")


def table(results: list) -> None:
    print(
        "\n| Case | simulated LL | instructions | D1 misses | LL misses (in LightGBM) "
        "| LL misses × latency, µs | measured µs (native) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for case, each, native in results:
        n = case.predicts
        ll = each.ll_misses / n
        share = each.ll_misses_lightgbm / each.ll_misses if each.ll_misses > 0 else 0
        low, high = case.latency
        print(
            f"| {case.name} | {kib(case.caches['LL']).split(',')[0]} "
            f"| {each.instructions / n:,.0f} | {each.d1_misses / n:,.0f} | {ll:,.0f} ({share:.0%}) "
            f"| {ll * low / 1000:,.0f}–{ll * high / 1000:,.0f} "
            f"({case.beyond}, {low:.0f}–{high:.0f} ns) "
            f"| {'–' if native is None else f'{native:,.0f}'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="fit the model, write booster.txt and rows.json")
    p.add_argument("out", type=Path)
    p.add_argument("--rounds", type=int, default=500)
    p.add_argument("--leaves", type=int, default=127)
    p.add_argument("--rows", type=int, default=300, help="holdout rows to write")
    p.add_argument("--threads", type=int, default=2)
    m = commands.add_parser("measure", help="every case under cachegrind; a Markdown table")
    m.add_argument("booster")
    m.add_argument("rows")
    m.add_argument("--small", help="a small model's booster.txt (same features) for contrast")
    m.add_argument("--predicts", type=int, default=1000, help="N: runs of N and 2N predicts")
    m.add_argument("--small-predicts", type=int, default=3000, help="N for the small model")
    m.add_argument("--warmup", type=int, default=100)
    m.add_argument("--dram-ns", type=float, nargs=2, default=DRAM_NS, metavar=("LOW", "HIGH"))
    m.add_argument("--l3-ns", type=float, nargs=2, default=L3_NS, metavar=("LOW", "HIGH"))
    for level in ("I1", "D1", "LL", "L2"):
        m.add_argument(f"--{level}", help="size,associativity,line bytes (default: cpu0's)")
    w = commands.add_parser("worker", help="(run by measure, under valgrind)")
    w.add_argument("booster")
    w.add_argument("rows")
    w.add_argument("--copies", type=int, default=1)
    w.add_argument("--predicts", type=int, default=300)
    w.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.rounds, args.leaves, args.rows, args.threads)
    elif args.command == "measure":
        measure(args)
    else:
        worker(args.booster, args.rows, args.copies, args.predicts, args.warmup)


if __name__ == "__main__":
    main()
