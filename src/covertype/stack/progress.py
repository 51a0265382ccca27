"""What the running stack has done since `covertype up` started, each thing told once:
trainings and their candidates (MLflow), drift reports and retraining decisions (data DB)."""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from covertype.settings import Settings


def experiment_id(settings: Settings, client: httpx.Client) -> str | None:
    answer = client.get(
        f"{settings.mlflow.tracking_uri}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": settings.mlflow.experiment_name},
    )
    return answer.json()["experiment"]["experiment_id"] if answer.status_code == 200 else None


def runs_since(
    settings: Settings, client: httpx.Client, experiment: str, since_ms: int
) -> list[dict]:
    """Runs of the experiment started at `since_ms` (epoch ms) or later, oldest first."""
    answer = client.post(
        f"{settings.mlflow.tracking_uri}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [experiment],
            "filter": f"attributes.start_time >= {since_ms}",
            "order_by": ["attributes.start_time ASC"],
            "max_results": 1000,
        },
    )
    answer.raise_for_status()
    return answer.json().get("runs", [])


class TrainingNews:
    """What the training runs say, each thing once: a training started, a candidate done.
    Runs of earlier stacks are left out (one killed mid-training stays RUNNING for ever)."""

    def __init__(self, since: float):
        self.cursor = int(since * 1000)  # runs before it are all told
        self.told: set[str] = set()
        self.experiment: str | None = None  # until the first training creates it

    def poll(self, settings: Settings, client: httpx.Client) -> list[str]:
        self.experiment = self.experiment or experiment_id(settings, client)
        if self.experiment is None:
            return []
        news, open_starts = [], []
        runs = runs_since(settings, client, self.experiment, self.cursor)
        for run in runs:
            info, data = run["info"], run["data"]
            tags = {t["key"]: t["value"] for t in data.get("tags", [])}
            metrics = {m["key"]: m["value"] for m in data.get("metrics", [])}
            run_id, status = info["run_id"], info["status"]
            if "mlflow.parentRunId" not in tags:  # a training
                if status == "RUNNING":
                    open_starts.append(int(info["start_time"]))
                if run_id not in self.told:
                    self.told.add(run_id)
                    news.append(f"training: run {info.get('run_name', run_id)} started")
            elif status == "RUNNING":
                open_starts.append(int(info["start_time"]))
            elif run_id not in self.told:  # a candidate, done
                self.told.add(run_id)
                family = tags.get("family", "a")
                if status == "FINISHED" and "validation_macro_f1" in metrics:
                    cost = metrics.get("serving_single_row_us")
                    over = (
                        ", over the budget" if tags.get("serving.within_budget") == "false" else ""
                    )
                    served = "" if cost is None else f"; {cost:.0f} µs a row{over}"
                    news.append(
                        f"training: {family} candidate, validation macro F1 "
                        f"{metrics['validation_macro_f1']:.4f} "
                        f"(fit {metrics.get('fit_seconds', 0):.1f} s{served})"
                    )
                else:
                    news.append(f"training: {family} candidate {status.lower()}")
        if runs:
            newest = max(int(r["info"]["start_time"]) for r in runs)
            self.cursor = min(open_starts, default=newest)
        return news


def ranges(batches: Iterable[int]) -> str:
    """`batch 3`, `batches 1–4`, `batches 1, 3`."""
    batches = sorted(batches)
    if not batches:
        return "no batch"
    if len(batches) == 1:
        return f"batch {batches[0]}"
    if batches == list(range(batches[0], batches[-1] + 1)) and len(batches) > 2:
        return f"batches {batches[0]}–{batches[-1]}"
    return "batches " + ", ".join(map(str, batches))


class MonitoringNews:
    """New drift reports, retraining decisions and release moves in the data DB, each told
    once; those of an earlier stack (on the same home) are not news."""

    def __init__(self) -> None:
        self.after = {"drift_reports": 0, "retrain_decisions": 0, "releases": 0}
        self.started = False

    def poll(self, settings: Settings) -> list[str]:
        from covertype import db

        try:
            engine = db.make_engine(settings.data_db)
        except Exception:
            return []
        news = []
        try:
            for table in (db.drift_reports, db.retrain_decisions, db.releases):
                try:
                    rows = db.rows_after(engine, table, self.after[table.name])
                except Exception:  # no table before the first training
                    continue
                while len(rows) == 100 and not self.started:  # skip to the newest
                    self.after[table.name] = rows[-1]["id"]
                    rows = db.rows_after(engine, table, self.after[table.name])
                if rows:
                    self.after[table.name] = rows[-1]["id"]
                if self.started:
                    news += [_tell(table.name, row) for row in rows]
        finally:
            engine.dispose()
        self.started = True
        return news


def _tell(table: str, row: dict) -> str:
    if table == "releases":
        moved = f"{row['from_version'] or '–'} → {row['to_version'] or '–'}"
        return f"release: {row['alias']} {moved} ({row['action']}): {row['reason']}"
    if table == "retrain_decisions":
        verdict = "retraining" if row["train"] else "training skipped"
        return f"policy: {verdict}: {row['reason']}"
    what = f"batch {row['batch_number']}" if row["kind"] == "batch" else "logged predictions"
    if not row["computed"]:
        return f"monitoring: {what}: {row['reason']}"
    verdict = "DRIFT" if row["dataset_drift"] else "no drift"
    line = (
        f"monitoring: {what} vs champion v{row['champion_version']}: {verdict} "
        f"({row['drifted_features']} of {row['features']} features, share "
        f"{row['drift_share']:.2f})"
    )
    if row.get("live_accuracy") is not None:
        line += (
            f"; the champion on it: accuracy {row['live_accuracy']:.3f}, "
            f"macro F1 {row['live_macro_f1']:.3f}"
        )
    return line
