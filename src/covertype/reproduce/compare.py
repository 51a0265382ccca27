"""The checks of a reproduction, each recorded → reproduced with a verdict, and their table.

A check that `counts` decides the result (data, draws, predictions, metrics); the others
(code, libraries) say what changed around the fit, which explains a difference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from covertype.train import manifest as manifests
from covertype.train import snapshot
from covertype.train.search import sample_candidates


@dataclass(frozen=True)
class Check:
    what: str
    recorded: str
    reproduced: str
    same: bool
    counts: bool = True  # False: information only

    @property
    def verdict(self) -> str:
        if self.same:
            return "same"
        return "DIFFERS" if self.counts else "differs (info)"

    def as_dict(self) -> dict:
        return asdict(self) | {"verdict": self.verdict}


def identical(checks: Sequence[Check]) -> bool:
    return all(c.same for c in checks if c.counts)


def data(manifest: dict, digests: dict[str, str]) -> list[Check]:
    """Each share's rows digest: recorded against the rows read back."""
    checks = []
    for name in snapshot.SHARES:
        recorded = manifest["shares"][name]
        found = digests[name]
        checks.append(
            Check(
                f"rows: {name} ({recorded['rows']})",
                recorded["digest"][:16],
                found[:16],
                found == recorded["digest"],
            )
        )
    return checks


def db_rows(difference: str) -> Check:
    """The data DB's rows against the snapshot's, when some differ."""
    return Check("rows in the data DB", "as snapshotted", difference, False)


def draws(manifest: dict) -> list[Check]:
    """The search's draws again from its seed (a random search only), and the winner."""
    search, winner = manifest["search"], manifest["winner"]
    checks = []
    if search.get("drawn_by") == "random":
        again = sample_candidates(search["n_iter"], search["families"], search["seed"])
        recorded = [(c["family"], c["params"]) for c in search["candidates"]]
        redrawn = [(c.family, _json(c.params)) for c in again]
        checks.append(
            Check(
                f"search: {search['n_iter']} draws of seed {search['seed']}",
                _digest(recorded),
                _digest(redrawn),
                recorded == redrawn,
            )
        )
    checks.append(
        Check("winner: " + winner["family"], _short(winner["params"]), "refit on them", True)
    )
    return checks


def predictions(
    served_classes: np.ndarray,
    served_scores: np.ndarray,
    refit_classes: np.ndarray,
    refit_scores: np.ndarray,
    tolerance: float,
) -> tuple[list[Check], dict[str, float]]:
    """The registered model's holdout answers against the refit's: every class, and every
    probability (or decision score) within `tolerance`."""
    rows = len(served_classes)
    differing = int((served_classes != refit_classes).sum())
    largest = float(np.abs(served_scores - refit_scores).max()) if rows else 0.0
    checks = [
        Check(f"holdout classes ({rows} rows)", "registered model", f"{differing} differ",
              differing == 0),
        Check(f"holdout scores (≤ {tolerance:g})", "registered model", f"max |Δ| {largest:.3g}",
              largest <= tolerance),
    ]  # fmt: skip
    return checks, {"differing_classes": differing, "max_score_difference": largest}


def metrics(manifest: dict, reproduced: dict[str, float]) -> list[Check]:
    """The holdout metrics recorded at training against the refit's."""
    checks = []
    for name in ("holdout_macro_f1", "holdout_accuracy"):
        before, after = manifest["winner"][name], reproduced[name]
        checks.append(Check(name, f"{before:.6f}", f"{after:.6f}", abs(before - after) <= 1e-12))
    return checks


def environment(manifest: dict) -> list[Check]:
    """Code and libraries then and now (information: a difference may explain another)."""
    now = manifests.code() | manifests.libraries()
    then = manifest["code"] | manifest["libraries"]
    keys = ("package_version", "commit", "lock_sha256", "python", "numpy", "scikit-learn",
            "lightgbm")  # fmt: skip
    return [
        Check(key, _cut(then.get(key, "?")), _cut(now.get(key, "?")), then.get(key) == now[key],
              counts=False)
        for key in keys
    ]  # fmt: skip


def table(checks: Sequence[Check]) -> str:
    """The checks as a fixed-width table."""
    rows = [("check", "recorded", "reproduced", "verdict")]
    rows += [(c.what, c.recorded, c.reproduced, c.verdict) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _json(value):
    return json.loads(json.dumps(value))


def _digest(value) -> str:
    return manifests.sha256(json.dumps(value, sort_keys=True).encode())[:16]


def _short(params: dict) -> str:
    text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())  # fmt: skip
    return text if len(text) <= 40 else text[:39] + "…"


def _cut(value: str) -> str:
    return value if len(value) <= 16 else value[:12] + "…"
