"""Start-up time of `covertype source` on the real file: cold (converting) and cached.

    .venv/bin/python benchmarks/bench_source_startup.py [--repeat 3]

Measures from process start to the first 200 of GET / (what a client waits for), in a
fresh COVERTYPE_HOME. Anchor, measured in the same run: pandas reading the same gzip CSV
alone. Target: under 10 s with the cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

from covertype.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support
from tests.support.servers import free_port

BIN = Path(sys.executable).parent


def start_once(home: Path, data: Path) -> float:
    port = free_port()
    env = os.environ | {"COVERTYPE_HOME": str(home), "COVERTYPE_SOURCE_DATA": str(data)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "covertype"), "--log-level", "WARNING", "source", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.02)
            if process.poll() is not None:
                raise RuntimeError("source exited")
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = Settings().source.data
    if data is None:
        sys.exit("set COVERTYPE_SOURCE_DATA to the covtype file")

    cold, warm, anchor = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as home:
            cold.append(start_once(Path(home), data))
            warm.append(start_once(Path(home), data))
        started = time.perf_counter()
        pd.read_csv(data)
        anchor.append(time.perf_counter() - started)

    print(f"file: {data}\n\n| what | median s ({args.repeat} runs) |\n|---|---|")
    print(f"| anchor: pandas.read_csv of the file alone | {statistics.median(anchor):.2f} |")
    print(f"| source start-up, first run (converts, caches) | {statistics.median(cold):.2f} |")
    print(f"| source start-up, cached | {statistics.median(warm):.2f} |")
    verdict = "meets" if statistics.median(warm) < 10 else "MISSES"
    print(f"\ncached start-up {verdict} the 10 s target")


if __name__ == "__main__":
    main()
