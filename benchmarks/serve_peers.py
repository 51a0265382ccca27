"""Peer model servers for bench_serve.py: BentoML 1.4 and MLServer 1.7, each in a virtualenv
of its own under `.cache/bench-peers/<name>` (not project dependencies), serving the same
LightGBM model as `covertype serve`.

Installed once with `python -m venv` and pip from PyPI; a stamp file holding the
requirements (and how long the install took) makes a rerun skip it. Each peer serves the
model's booster (`booster.txt`, saved from the served pipeline's LGBMClassifier) and is fed
the row the booster reads (the encoded floats, as `benchmarks` writes them into each peer's
body): the peers skip the record → row encoding that ours does, which only favours them.

Configured as their docs recommend for CPU serving of a tree model, on the same workers:

  BentoML: a `@bentoml.service(workers=W)` class whose `@bentoml.api(batchable=True)`
      predicts with `Booster.predict(num_threads=1)`: adaptive batching on (max 64 rows,
      max latency 1 s: with 10 ms its dispatcher answered most requests under load with
      an error, shedding what it could not batch in time), `bentoml serve`.
  MLServer: its LightGBM runtime (`mlserver_lightgbm.LightGBMModel`, the model file as
      `model.bst`), `parallel_workers` W, adaptive batching on (`max_batch_size` 64,
      `max_batch_time` 5 ms), `mlserver start`. The runtime calls `Booster.predict` with no
      thread count: OMP_NUM_THREADS=1 keeps one OpenMP thread per worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / ".cache" / "bench-peers"
MAX_BATCH = 64

REQUIREMENTS = {
    "bentoml": ["bentoml>=1.4,<1.5"],
    # uvloop 0.21+ raises in get_event_loop() without a loop: MLServer 1.7's parallel
    # workers call it at start and die (its own pin leaves uvloop open).
    "mlserver": ["mlserver>=1.7,<1.8", "mlserver-lightgbm>=1.7,<1.8", "uvloop<0.21"],
}


def lightgbm_pin() -> str:
    import lightgbm

    return f"lightgbm=={lightgbm.__version__}"  # the same trees' code as ours


def ensure_venv(name: str, say=print) -> tuple[Path, float | None, str]:
    """The peer's virtualenv (installed now unless its stamp matches): (python, seconds the
    install took or None when it was already there, the peer's version)."""
    home = ROOT / name
    python = home / "bin" / "python"
    wanted = [*REQUIREMENTS[name], lightgbm_pin()]
    stamp = home / "installed.json"
    if stamp.is_file():
        done = json.loads(stamp.read_text())
        if done.get("requirements") == wanted and python.is_file():
            return python, None, done.get("version", "?")
    say(f"installing {name} into {home}: {' '.join(wanted)} ...")
    started = time.perf_counter()
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(home)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *wanted], check=True)
    seconds = time.perf_counter() - started
    version = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    stamp.write_text(
        json.dumps({"requirements": wanted, "seconds": round(seconds), "version": version})
    )
    say(f"{name} {version} installed in {seconds:.0f}s")
    return python, seconds, version


def install_seconds(name: str) -> float | None:
    stamp = ROOT / name / "installed.json"
    return json.loads(stamp.read_text()).get("seconds") if stamp.is_file() else None


BENTO_SERVICE = """\
import os

import bentoml
import lightgbm
import numpy as np

WORKERS = int(os.environ.get("PEER_WORKERS", "1"))


@bentoml.service(workers=WORKERS)
class Covertype:
    def __init__(self) -> None:
        self.booster = lightgbm.Booster(model_file=os.environ["PEER_MODEL_FILE"])

    @bentoml.api(batchable=True, max_batch_size=%(batch)d, max_latency_ms=1000)
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.predict(rows, num_threads=1)
"""


@dataclass
class Peer:
    """How bench_serve starts and loads one peer."""

    label: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    ready: str
    path: str
    bodies: list[str]


def bentoml_peer(python: Path, folder: Path, model_file: Path, rows: list[list[float]],
                 workers: int, port: int) -> Peer:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "service.py").write_text(BENTO_SERVICE % {"batch": MAX_BATCH})
    return Peer(
        "(p1) BentoML, adaptive batching",
        [str(python.parent / "bentoml"), "serve", "service:Covertype", "--host", "127.0.0.1",
         "--port", str(port)],
        {"PEER_MODEL_FILE": str(model_file), "PEER_WORKERS": str(workers),
         "BENTOML_DO_NOT_TRACK": "true", "OMP_NUM_THREADS": "1"},
        folder, "/readyz", "/predict",
        [json.dumps({"rows": [row]}) for row in rows],
    )  # fmt: skip


def mlserver_peer(python: Path, folder: Path, model_file: Path, rows: list[list[float]],
                  workers: int, ports: tuple[int, int, int]) -> Peer:  # fmt: skip
    model = folder / "covertype"
    model.mkdir(parents=True, exist_ok=True)
    target = model / "model.bst"
    target.write_bytes(model_file.read_bytes())
    http, grpc, metrics = ports
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "http_port": http,
                "grpc_port": grpc,
                "metrics_port": metrics,
                "host": "127.0.0.1",
                "parallel_workers": workers,
            }
        )
    )
    (model / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "covertype",
                "implementation": "mlserver_lightgbm.LightGBMModel",
                "max_batch_size": MAX_BATCH,
                "max_batch_time": 0.005,
                "parameters": {"uri": "./model.bst"},
            }
        )
    )
    width = len(rows[0])
    bodies = [
        json.dumps(
            {"inputs": [{"name": "input-0", "shape": [1, width], "datatype": "FP64", "data": row}]}
        )
        for row in rows
    ]
    return Peer(
        "(p2) MLServer LightGBM runtime, adaptive batching",
        [str(python.parent / "mlserver"), "start", str(folder)],
        {"OMP_NUM_THREADS": "1"},
        folder, "/v2/models/covertype/ready", "/v2/models/covertype/infer", bodies,
    )  # fmt: skip


if __name__ == "__main__":  # install both now: `python benchmarks/serve_peers.py`
    for peer in REQUIREMENTS:
        print(peer, ensure_venv(peer))
