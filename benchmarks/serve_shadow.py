"""The shadow cases of bench_serve.py: (d) with a challenger predicting in shadow beside it.

(ds10) and (ds100) are (d) (the same version, workers and defaults) with a challenger: a
second registered version of the same model files under an alias of this run
(COVERTYPE_CHALLENGER_ALIAS), which the API loads beside the champion and asks for 10 % and
100 % of the requests (COVERTYPE_SHADOW_SHARE) off the request path. (d) itself watches an
alias nobody sets: shadow off, the anchor. The three are measured in the same interleaved
rounds as the other servers. Around each 8-connection point a `Probe` reads the API's
/metrics (covertype_shadow_predictions_total: records the challenger predicted;
covertype_shadow_dropped_total: requests not shadowed, the shadow queue full; the mean
predict µs of each role) and the machine's busy CPU; once the server stopped, it counts the
rows the prediction log wrote into shadow_predictions for the requests of that window.

Targets (issue 31), on medians of the rounds: (ds10)'s req/s ≥ 85 % of (d)'s; its p50
within ±10 % of (d)'s, at 8 connections (where p50 follows req/s: the connections queue) and
in bench_serve's open-loop phase at one fixed rate (`--fixed-rounds` runs each); (ds100)
reported.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

ANCHOR = "(d)"
CASES = {"(ds10)": 0.1, "(ds100)": 1.0}  # key → COVERTYPE_SHADOW_SHARE
NO_CHALLENGER = "bench-no-challenger"  # (d)'s challenger alias: set by nobody
COPY_TAG = "bench.shadow_copy_of"  # on the registered copy: the version it copies
SECONDS = ("covertype_shadow_predict_seconds_sum", "covertype_shadow_predict_seconds_count")


@dataclass
class Challenger:
    """The second version the shadow cases load beside the champion."""

    alias: str
    version: str
    created: bool  # registered by this run


def name_challenger(uri: str, name: str, champion: str, scratch: bool) -> Challenger:
    """A copy of the champion's version (same files, its tags) under an alias of this run:
    the API shadows nothing when the challenger is the champion's own version. A scratch
    registry keeps its copy for the next run (`--state`)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    copies = [
        v.version
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get(COPY_TAG) == str(champion)
    ]
    created = not (scratch and copies)
    if created:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        tags = client.get_model_version(name, champion).tags | {COPY_TAG: str(champion)}
        copy = str(mlflow.register_model(f"models:/{name}/{champion}", name, tags=tags).version)
    else:
        copy = str(copies[0])
    alias = "bench-challenger-" + uuid.uuid4().hex[:6]
    client.set_registered_model_alias(name, alias, copy)
    return Challenger(alias, copy, created)


def forget_challenger(uri: str, name: str, challenger: Challenger, scratch: bool) -> None:
    """The run's alias removed; a copy made in a registry that is not the scratch one too."""
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    client.delete_registered_model_alias(name, challenger.alias)
    if challenger.created and not scratch:
        client.delete_model_version(name, challenger.version)


def metric_samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def wait_for_challenger(url: str, challenger: Challenger, workers: int, timeout=600) -> float:
    """Seconds until every worker serves the challenger (its gauge has one sample a worker;
    a first load converts the trees to ONNX, tens of seconds)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        samples = metric_samples(url)
        loaded = sum(
            1
            for name, labels, value in samples
            if name == "covertype_challenger_version"
            and labels.get("alias") == challenger.alias
            and value == float(challenger.version)
        )
        failed = sum(
            value
            for name, labels, value in samples
            if name == "covertype_model_loads_total"
            and "(challenger)" in labels.get("source", "")
            and labels.get("outcome") == "failed"
        )
        if failed:
            raise RuntimeError(f"the challenger failed to load at {url}: see the server's log")
        if loaded >= workers:
            return time.perf_counter() - started
        time.sleep(0.5)
    raise TimeoutError(f"the challenger not loaded by {workers} workers after {timeout} s")


def shadow_counters(url: str) -> dict[str, float]:
    """The API's counters summed over the workers: /predict answered 200, the shadow's
    records by outcome, its dropped requests, its per-record predict seconds by role."""
    counters: dict[str, float] = {}
    for name, labels, value in metric_samples(url):
        if name == "covertype_requests_total":
            if labels.get("endpoint") != "/predict" or labels.get("status") != "200":
                continue
            key = "answered"
        elif name == "covertype_shadow_predictions_total":
            key = labels["outcome"]
        elif name == "covertype_shadow_dropped_total":
            key = "dropped"
        elif name in SECONDS:
            key = f"{labels['role']}_{name.rsplit('_', 1)[1]}"  # champion_sum, ..._count
        else:
            continue
        counters[key] = counters.get(key, 0.0) + value
    return counters


def busy_cpu() -> float:
    """CPU seconds the whole machine spent busy so far (every core)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


@dataclass
class ShadowPoint:
    """One round of one case at 8 connections."""

    case: str
    share: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    answered: int  # /predict requests answered 200 in the window (the API's count)
    shadowed: int  # records the challenger predicted (agree + disagree + error)
    agreed: int
    failed: int  # records the challenger raised on
    dropped: int  # requests not shadowed: the shadow queue was full
    written: int  # shadow_predictions rows for the window's requests
    champion_us: float  # mean predict µs a record, each role (shadowed requests only)
    challenger_us: float
    server_us: float  # the server's CPU a request answered
    server_cores: float  # CPU the server's processes used, in cores
    wrk_cores: float
    other_cores: float  # the rest of the machine (other work, the benchmark itself)


class Probe:
    """Around a server's 8-connection point: the shadow's counters and the machine's CPU;
    `finish` (once the server stopped and its prediction log flushed) counts the rows."""

    def __init__(self, case: str, url: str, data_db: str, seconds: int):
        self.case, self.url, self.data_db, self.seconds = case, url, data_db, seconds
        self.share = CASES.get(case, 0.0)
        self.points: list[tuple[ShadowPoint, float, float]] = []  # with the window
        self._before: tuple[float, dict[str, float], float] | None = None

    def before(self, connections: int) -> None:
        self._before = None
        if connections == 8:
            self._before = (time.time(), shadow_counters(self.url), busy_cpu())

    def after(self, point) -> None:
        """`point`: bench_serve's Point just measured."""
        if self._before is None:
            return
        started, counters, busy = self._before
        ended = time.time()
        now = shadow_counters(self.url)
        delta = {k: now.get(k, 0.0) - counters.get(k, 0.0) for k in now.keys() | counters}
        shadowed = delta.get("agree", 0) + delta.get("disagree", 0) + delta.get("error", 0)

        def mean_us(role: str) -> float:
            n = delta.get(f"{role}_count", 0)
            return delta.get(f"{role}_sum", 0) / n * 1e6 if n else float("nan")

        requests = point.rps * self.seconds  # as bench_serve's CPU per request counts them
        server = point.server_cpu_us * requests / 1e6 / self.seconds
        client = point.client_cpu_us * requests / 1e6 / self.seconds
        machine = (busy_cpu() - busy) / (ended - started)
        self.points.append(
            (
                ShadowPoint(
                    self.case, self.share, point.rps, point.p50_ms, point.p99_ms, point.errors,
                    round(delta.get("answered", 0)), round(shadowed), round(delta.get("agree", 0)),
                    round(delta.get("error", 0)), round(delta.get("dropped", 0)), 0,
                    mean_us("champion"), mean_us("challenger"), point.server_cpu_us, server,
                    client, max(machine - server - client, 0.0),
                ),
                started,
                ended,
            )
        )  # fmt: skip

    def finish(self) -> list[ShadowPoint]:
        """The points, each with the shadow_predictions rows of its window."""
        import sqlalchemy as sa

        from covertype import db

        engine = db.make_engine(self.data_db)
        table = db.shadow_predictions
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table(table.name):  # shadow off: never written
                    return [point for point, _, _ in self.points]
                for point, started, ended in self.points:
                    window = table.c.predicted_at.between(
                        datetime.fromtimestamp(started, UTC), datetime.fromtimestamp(ended, UTC)
                    )
                    count = sa.select(sa.func.count()).select_from(table).where(window)
                    point.written = conn.execute(count).scalar_one()
        finally:
            engine.dispose()
        return [point for point, _, _ in self.points]


# ---------------------------------------------------------------- the report


def medians(points: list[ShadowPoint]) -> dict[str, dict[str, float]]:
    """Per case, the median of each figure over its rounds (each figure on its own)."""
    cases: dict[str, list[ShadowPoint]] = {}
    for p in points:
        cases.setdefault(p.case, []).append(p)
    fields = [f for f in ShadowPoint.__dataclass_fields__ if f not in ("case", "share")]
    return {
        case: {f: statistics.median(getattr(p, f) for p in ps) for f in fields}
        | {"rounds": [p.rps for p in ps]}  # type: ignore[dict-item]
        for case, ps in cases.items()
    }


def report(points: list[ShadowPoint], fixed: list, workers: int) -> None:
    """The shadow cases against shadow off measured in the same run, and issue 31's targets:
    closed loop (wrk, 8 connections: req/s; there p50 follows req/s, as the connections
    wait for each other) and open loop at one fixed rate (p50 at the same offered load)."""
    if not points:
        return
    by_case = medians(points)
    order = [c for c in (ANCHOR, *CASES) if c in by_case]
    off = by_case.get(ANCHOR)
    print(
        f"\nShadow predictions: (d) with a challenger (a copy of its version) predicting a "
        f"share of the requests off the request path; {workers} workers, 8 connections; "
        f"medians of {len(by_case[order[0]]['rounds'])} interleaved rounds, each figure "
        f"on its own:\n"
    )
    print(
        "| case | req/s, rounds | req/s | vs off | p50 ms | p50 vs off | p99 ms | shadowed "
        "records / answered | dropped requests | rows written | challenger / champion µs "
        "a record | server CPU µs a request (a shadowed one's extra) | CPU cores: server / "
        "wrk / other |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for case in order:
        m = by_case[case]
        rounds = " / ".join(f"{r:,.0f}" for r in m["rounds"])  # type: ignore[attr-defined]
        roles, cpu = "–", f"{m['server_us']:.0f}"
        if m["shadowed"]:
            roles = f"{m['challenger_us']:.0f} / {m['champion_us']:.0f}"
            if off:  # the extra CPU spread over the requests, per shadowed one
                per = (m["server_us"] - off["server_us"]) * m["answered"] / m["shadowed"]
                cpu += f" (+{per:.0f})"
        print(
            f"| {label(case)} | {rounds} | {m['rps']:,.0f} | {ratio(m, off, 'rps')} | "
            f"{m['p50_ms']:.2f} | {change(m, off, 'p50_ms')} | {m['p99_ms']:.2f} | "
            f"{m['shadowed']:,.0f} / {m['answered']:,.0f} | {m['dropped']:,.0f} | "
            f"{m['written']:,.0f} | {roles} | {cpu} | {m['server_cores']:.2f} / "
            f"{m['wrk_cores']:.2f} / {m['other_cores']:.2f} |"
        )
    open_loop, runs = open_loop_medians(fixed, order)
    common = ANCHOR in open_loop
    if common:
        base = open_loop[ANCHOR]
        print(
            f"\nOpen loop at {base['rate']:,.0f} req/s (benchmarks/open_loop.py), medians of "
            f"{runs} interleaved runs, each figure on its own:"
        )
        for case in order:
            if case in open_loop:
                f = open_loop[case]
                print(
                    f"  {label(case)}: p50 {f['p50_ms']:.2f} ms ({change(f, base, 'p50_ms')}), "
                    f"p99 {f['p99_ms']:.2f} ms ({change(f, base, 'p99_ms')}), "
                    f"{f['achieved']:,.0f} answered/s, {f['errors']:.0f} errors, "
                    f"{f['dropped']:.0f} not sent; p50 per run: {f['p50s']}"
                )
    if off is None:
        return
    cores = psutil.cpu_count() or 1
    used = off["server_cores"] + off["wrk_cores"] + off["other_cores"]
    print(
        f"\nLoad generator: wrk used {off['wrk_cores']:.2f} cores ({off['wrk_cores'] / cores:.0%}"
        f" of the machine) beside shadow off's server ({off['server_cores']:.2f}), other work "
        f"{off['other_cores']:.2f}: "
        + (
            "the machine was saturated, so the server had what wrk and the rest left"
            if used >= 0.9 * cores
            else "the machine had idle CPU, the server was not starved of it"
        )
    )
    print("\nShadow targets (medians against shadow off, same run):")
    for case in CASES:
        if case not in by_case:
            continue
        m = by_case[case]
        rps, p50 = m["rps"] / off["rps"], m["p50_ms"] / off["p50_ms"] - 1
        if case != "(ds10)":
            print(
                f"  report  {label(case)}: {m['rps']:,.0f} req/s = {rps:.0%} of shadow off, "
                f"p50 {p50:+.1%}, {m['dropped']:,.0f} requests not shadowed (queue full)"
            )
            continue
        checks = [
            (rps >= 0.85, f"{label(case)} {m['rps']:,.0f} req/s = {rps:.0%} of "
             f"{off['rps']:,.0f}", "≥ 85 %"),
            (abs(p50) <= 0.10, f"{label(case)} p50 at 8 connections {m['p50_ms']:.2f} ms vs "
             f"{off['p50_ms']:.2f} ms: {p50:+.1%}", "±10 %"),
        ]  # fmt: skip
        if common and case in open_loop:
            mine, base = open_loop[case]["p50_ms"], open_loop[ANCHOR]["p50_ms"]
            checks.append(
                (abs(mine / base - 1) <= 0.10, f"{label(case)} p50 at "
                 f"{open_loop[ANCHOR]['rate']:,.0f} req/s (open loop): {mine:.2f} ms vs "
                 f"{base:.2f} ms: {mine / base - 1:+.1%}", "±10 %")
            )  # fmt: skip
        for ok, text, target in checks:
            print(f"  {'PASS' if ok else 'FAIL'}  {text} (target {target})")


def ratio(m: dict, off: dict | None, key: str) -> str:
    return f"{m[key] / off[key]:.0%}" if off else "–"


def change(m: dict, off: dict | None, key: str) -> str:
    return f"{m[key] / off[key] - 1:+.1%}" if off else "–"


def open_loop_medians(fixed: list, order: list[str]) -> tuple[dict[str, dict], int]:
    """Per case, the medians of its open-loop runs at the rate every server of the run was
    offered ((d) also ran at half its own maximum); and how many runs each had."""
    lowest = min((f.rate for f in fixed), default=0)
    runs: dict[str, list] = {}
    for f in fixed:
        if f.server.split()[0] in order and f.rate == lowest:
            runs.setdefault(f.server.split()[0], []).append(f)
    fields = ("rate", "achieved", "p50_ms", "p99_ms", "errors", "dropped")
    medians = {
        case: {k: statistics.median(getattr(f, k) for f in fs) for k in fields}
        | {"p50s": " / ".join(f"{f.p50_ms:.2f}" for f in fs)}
        for case, fs in runs.items()
    }
    return medians, min((len(fs) for fs in runs.values()), default=0)


def label(case: str) -> str:
    if case == ANCHOR:
        return "(d) shadow off"
    return f"{case} shadow {CASES[case]:.0%}"
