"""What made a version, complete, in one JSON artifact (`manifest.json` of the training run)
and as tags: the rows of each share (by digest and snapshot), the search's seed and draws,
the winner's parameters, the settings that change a fit, the code and the libraries.

`covertype reproduce` reads it back; nothing else is needed to refit the version.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from covertype.settings import Settings
from covertype.train.search import Candidate
from covertype.train.snapshot import SHARES, StoredShare

FORMAT = 1
FILE = "manifest.json"
LIBRARIES = ("numpy", "pandas", "scipy", "scikit-learn", "lightgbm", "mlflow", "skops", "pyarrow")
UNKNOWN = "unknown"


def fit_threads(threads: int) -> int:
    """The threads a fit of `threads` (0: every core) runs with here: recorded, so that a
    reproduction fits with as many (LightGBM's sums depend on it)."""
    return threads or len(os.sched_getaffinity(0))


def code() -> dict[str, str]:
    """The package version; the commit and whether the work tree had changes, when the code
    runs from a git checkout ("unknown" otherwise); the lock file's digest, if beside it."""
    here = Path(__file__).resolve().parent
    commit, dirty = UNKNOWN, UNKNOWN
    try:
        top = _git(here, "rev-parse", "--show-toplevel")
        if (Path(top) / "src" / "covertype").resolve() == here.parent:
            commit = _git(here, "rev-parse", "HEAD")
            dirty = str(bool(_git(here, "status", "--porcelain", "--untracked-files=no"))).lower()
    except (OSError, subprocess.SubprocessError):
        top = ""
    lock = Path(top) / "requirements.lock" if top else None
    return {
        "package_version": metadata.version("covertype"),
        "commit": commit,
        "dirty": dirty,
        "lock_sha256": sha256(lock.read_bytes()) if lock and lock.is_file() else UNKNOWN,
        "environment_sha256": environment_digest(),
    }


def environment_digest() -> str:
    """SHA-256 of every installed distribution's name and version: the environment the fit
    ran in, known whether or not a lock file is at hand."""
    installed = sorted(
        f"{(d.metadata['Name'] or '').lower()}=={d.version}" for d in metadata.distributions()
    )
    return sha256("\n".join(installed).encode())


def libraries() -> dict[str, str]:
    found = {"python": platform.python_version(), "machine": platform.machine()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = UNKNOWN
    return found


def build(
    *,
    settings: Settings,
    drawn: Sequence[Candidate],
    best: Candidate,
    stored: dict[str, StoredShare],
    batches: str,
    model: dict[str, str],
    families: Sequence[str],
    drawn_by: str,
) -> dict:
    """The manifest of a training (JSON-ready)."""
    train = settings.train
    return {
        "format": FORMAT,
        "model": model,
        "shares": {name: stored[name].as_dict() for name in SHARES},
        "data": {
            "batches": batches,
            "digest": data_digest(stored),
            "split": {
                "rule": "row key buckets (train.data.split)",
                "holdout_percent": train.holdout_percent,
                "validation_percent": train.validation_percent,
            },
        },
        "search": {
            "seed": train.seed,
            "drawn_by": drawn_by,  # "random": `search.sample_candidates`; "given": as listed
            "n_iter": len(drawn),
            "families": list(families),
            "serve_budget_us": settings.serve.budget_us,  # the winner is within it
            "candidates": [
                {
                    "family": c.family,
                    "params": c.params,
                    "status": c.status,
                    "validation_macro_f1": c.validation.get("validation_macro_f1"),
                    "single_row_us": c.cost.single_row_us if c.cost else None,
                    "run_id": c.run_id,
                }
                for c in drawn
            ],
        },
        "winner": {
            "family": best.family,
            "params": best.params,
            "refit_on": ["train", "validation"],
            "holdout_macro_f1": best.holdout["holdout_macro_f1"],
            "holdout_accuracy": best.holdout["holdout_accuracy"],
            "serving_cost": best.cost.tags() if best.cost else None,
        },
        "fit": {
            "seed": train.seed,
            "threads_setting": train.threads,
            "threads": fit_threads(train.threads),
        },
        "code": code(),
        "libraries": libraries(),
    }


def data_digest(stored: dict) -> str:
    """One digest of the three shares (each a StoredShare or a manifest's dict)."""
    parts = [
        f"{name}:{s['digest'] if isinstance(s, dict) else s.digest}"
        for name, s in sorted(stored.items())
    ]
    return sha256("\n".join(parts).encode())


def tags(manifest: dict) -> dict[str, str]:
    """The manifest's summary as tags, for the training run and the version."""
    shares = manifest["shares"]
    found = {
        "manifest.format": str(manifest["format"]),
        "manifest.data_digest": manifest["data"]["digest"],
        "manifest.seed": str(manifest["search"]["seed"]),
        "manifest.fit_threads": str(manifest["fit"]["threads"]),
        "manifest.snapshot_bytes": str(sum(s["bytes"] for s in shares.values())),
        "manifest.snapshot_reused": ",".join(n for n in SHARES if shares[n]["reused"]) or "none",
    }
    found |= {f"manifest.{n}_digest": shares[n]["digest"] for n in SHARES}
    found |= {f"manifest.code.{k}": v for k, v in manifest["code"].items()}
    found |= {f"manifest.lib.{k}": v for k, v in manifest["libraries"].items()}
    return found


def _git(where: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
