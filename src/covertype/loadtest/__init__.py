"""Load tests of the inference API with Locust: headless runs with reports and a summary,
the web UI behind a login, master and worker processes.

`covertype loadtest` runs `locust` as a child process (Locust patches the interpreter with
gevent, so it never runs inside ours), then reads its CSV statistics.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from covertype import schema
from covertype.settings import Settings

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SAMPLE_ROWS = 2000


def load_records(settings: Settings, rows: int = SAMPLE_ROWS, seed: int = 0) -> list[dict]:
    """Real records sampled from COVERTYPE_SOURCE_DATA; synthetic ones inside the schema's
    ranges when the file is not there (e.g. a worker without the data)."""
    from covertype import dataset

    rng = np.random.default_rng(seed)
    if settings.source.data is not None and Path(settings.source.data).is_file():
        frame = dataset.load_dataset(settings)
        picked = frame.iloc[rng.choice(len(frame), min(rows, len(frame)), replace=False)]
        return [
            {name: (str(v) if name in schema.CATEGORICAL else int(v)) for name, v in row.items()}
            for row in picked[list(schema.FEATURES)].to_dict("records")
        ]
    records = []
    for _ in range(rows):
        record: dict[str, object] = {
            f.name: int(rng.integers(f.low, f.high + 1)) for f in schema.NUMERIC_FIELDS
        }
        record[schema.WILDERNESS] = str(rng.choice(schema.WILDERNESS_AREAS))
        record[schema.SOIL] = str(rng.choice(schema.SOIL_TYPES))
        records.append(record)
    return records


@dataclass
class Row:
    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float


@dataclass
class Summary:
    model_version: str
    rows: list[Row]
    report_dir: Path
    exit_code: int

    @property
    def total(self) -> Row:
        return next(r for r in self.rows if r.name == "Aggregated")

    def table(self) -> str:
        lines = [
            f"model version under test: {self.model_version}",
            "| endpoint | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.name} | {r.requests} | {r.failures} | {r.rps:.1f} | {r.p50:.0f} | "
            f"{r.p95:.0f} | {r.p99:.0f} |"
            for r in self.rows
        ]
        lines.append(f"reports: {self.report_dir}")
        return "\n".join(lines)


def model_version(settings: Settings) -> str:
    """The version the API serves (from GET /model), or why it is unknown."""
    try:
        response = httpx.get(
            f"{settings.serve.url}/model", timeout=10, headers=settings.auth.api_headers
        )
    except httpx.HTTPError as error:
        return f"unknown ({settings.serve.url} unreachable: {error})"
    if response.status_code != 200:
        return f"unknown (GET /model answered {response.status_code})"
    return str(response.json().get("version"))


def locust_command(
    settings: Settings,
    *,
    users: int | None = None,
    spawn_rate: float | None = None,
    run_time: str | None = None,
    prefix: Path | None = None,
    web: bool = False,
    master: bool = False,
    worker: bool = False,
    master_host: str | None = None,
    expect_workers: int | None = None,
    requests: int | None = None,
) -> list[str]:
    """The `locust` command line for a headless run, the web UI, a master or a worker."""
    command = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE)]
    command += ["--host", settings.serve.url]
    if worker:
        return [*command, "--worker", "--master-host", master_host or "127.0.0.1"]
    if master:
        command.append("--master")
        if expect_workers:
            command += ["--expect-workers", str(expect_workers)]
    if web:
        command += [
            "--web-host", settings.loadtest.host, "--web-port", str(settings.loadtest.port),
            "--web-login",
        ]  # fmt: skip
    else:
        command.append("--headless")
    if users is not None:
        command += ["--users", str(users)]
    if spawn_rate is not None:
        command += ["--spawn-rate", str(spawn_rate)]
    if run_time is not None:
        command += ["--run-time", run_time]
    if requests:
        command += ["--stop-after-requests", str(requests)]
    if prefix is not None:
        command += ["--csv", str(prefix), "--html", f"{prefix}.html"]
    return command


def run_headless(
    settings: Settings,
    users: int,
    spawn_rate: float,
    run_time: str,
    out: Path | None = None,
    requests: int | None = None,
) -> Summary:
    """One headless run (until `run_time`, or `requests` answered if sooner): Locust's CSV and
    HTML reports in `out`, and their summary."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = out or settings.loadtest.reports_dir / stamp
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / "locust"
    version = model_version(settings)
    command = locust_command(
        settings,
        users=users,
        spawn_rate=spawn_rate,
        run_time=run_time,
        prefix=prefix,
        requests=requests,
    )
    command += ["--only-summary", "--exit-code-on-error", "1"]
    done = subprocess.run(command, env=os.environ.copy(), check=False)
    stats = prefix.with_name(f"{prefix.name}_stats.csv")
    if not stats.is_file():
        raise RuntimeError(f"locust wrote no statistics ({stats}); exit code {done.returncode}")
    return Summary(version, read_stats(stats), out, done.returncode)


def read_stats(path: Path) -> list[Row]:
    with path.open(newline="") as handle:
        return [
            Row(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]),
                p50=_ms(row["50%"]),
                p95=_ms(row["95%"]),
                p99=_ms(row["99%"]),
            )
            for row in csv.DictReader(handle)
        ]


def _ms(value: str) -> float:
    return float(value) if value not in ("", "N/A") else float("nan")
