"""The release review, after each collected batch (the collection DAG's `review_release`,
`covertype releases review`): the challenger is promoted or retired on the batch's rows
that neither it nor the champion trained on, and a champion promoted since the last review
is checked against the one it replaced on the same rows, and rolled back when it lost by
more than COVERTYPE_ROLLBACK_MARGIN.

Nothing moves unless MLflow answered every question the decision needed: a registry that
does not answer raises (TrackingUnreachable), and the next batch's review decides again.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from covertype import db, schema
from covertype.release import ledger, rules
from covertype.release.moves import aliases, move
from covertype.serve.serving_cost import ServingCost
from covertype.settings import Settings
from covertype.tracking.client import connect

log = logging.getLogger(__name__)
SHADOW_ROWS = 100_000  # the newest shadow answers the latency and agreement are read from
CHECKED = "release.checked_batch"  # on a promoted champion: the batch it was checked on


class Review:
    """One review's MLflow client, data DB and the models it loaded (each loaded once)."""

    def __init__(self, settings: Settings, client, engine: sa.Engine, actor: str):
        self.settings, self.client, self.engine, self.actor = settings, client, engine, actor
        self.name = settings.mlflow.model_name
        self._models: dict[str, object] = {}
        self._versions: dict[str, object] = {}

    def version(self, number: str):
        """The registry's ModelVersion, asked once per review (its tags are read thrice)."""
        if number not in self._versions:
            self._versions[number] = self.client.get_model_version(self.name, number)
        return self._versions[number]

    def predict(self, number: str, X: pd.DataFrame):
        import mlflow

        if number not in self._models:
            with tempfile.TemporaryDirectory() as tmp:
                self._models[number] = mlflow.sklearn.load_model(
                    f"models:/{self.name}/{number}", dst_path=tmp
                )
        return self._models[number].predict(X)  # type: ignore[attr-defined]

    def fresh(self, batch: int, old: str, new: str) -> rules.Fresh | None:
        """`old` and `new` scored on the batch's rows, None when either trained on the
        batch or it has fewer rows than COVERTYPE_DRIFT_MIN_ROWS."""
        from sklearn.metrics import accuracy_score

        from covertype.train import evaluate

        for number in (old, new):
            trained = self.version(number).tags.get("trained_batches", "")
            if str(batch) in trained.split(","):
                return None
        rows = batch_rows(self.engine, batch)
        if len(rows) < self.settings.monitor.drift_min_rows:
            return None
        X, y = rows[list(schema.FEATURES)], rows[schema.LABEL].to_numpy()
        if len(set(y)) > 1:
            metric, score = "macro F1", evaluate.macro_f1
        else:  # over 7 classes a one-class batch's macro F1 is that class's F1 / 7
            metric, score = "accuracy", accuracy_score
        return rules.Fresh(
            batch, len(rows), metric, score(y, self.predict(old, X)), score(y, self.predict(new, X))
        )

    def move(self, alias: str, action: str, to: str | None, verdict: rules.Verdict):
        return move(
            self.client,
            self.settings,
            alias=alias,
            action=action,
            to_version=to,
            actor=self.actor,
            reason=verdict.reason,
            scores=verdict.scores,
            engine=self.engine,
        )


def review(settings: Settings, actor: str, batch: int | None = None, client=None) -> list[str]:
    """Decide the challenger, then check a newly promoted champion, on `batch` (default:
    the newest collected); what was decided, a line each."""
    client = client or connect(settings)
    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        if batch is None:
            batch = max(db.rows_by_batch(settings.data_db), default=None)
        if batch is None:
            return ["no batch collected yet: nothing to review"]
        work = Review(settings, client, engine, actor)
        said, promoted = challenger_step(work, batch)
        if not promoted:
            said += champion_step(work, batch)
        for line in said:
            log.info("release review of batch %s: %s", batch, line)
        return said
    finally:
        engine.dispose()


def challenger_step(work: Review, batch: int) -> tuple[list[str], bool]:
    settings = work.settings
    champion_alias = settings.mlflow.model_alias
    challenger_alias = settings.release.challenger_alias
    where = aliases(work.client, settings)
    challenger, champion = where.get(challenger_alias), where.get(champion_alias)
    if challenger is None:
        return [f"no {challenger_alias}"], False
    if champion is None or champion == challenger:
        why = "there was no champion" if champion is None else "it is the champion already"
        verdict = rules.Verdict(rules.PROMOTE, f"promoted v{challenger}: {why}")
        if champion is None:
            work.move(champion_alias, ledger.PROMOTE, challenger, verdict)
        work.move(challenger_alias, ledger.PROMOTE, None, verdict)
        return [verdict.reason], champion is None
    tags = work.version(challenger).tags
    cost = ServingCost.from_tags(tags)
    verdict = rules.judge_challenger(
        champion,
        challenger,
        work.fresh(batch, champion, challenger),
        shadow_stats(work.engine, challenger, champion),
        cost.single_row_us if cost else None,
        settings.serve.budget_us,
        _since(tags.get(f"release.{challenger_alias}_since")),
        settings.release,
    )
    if verdict.action == rules.PROMOTE:
        work.move(champion_alias, ledger.PROMOTE, challenger, verdict)
        work.move(challenger_alias, ledger.PROMOTE, None, verdict)
        return [verdict.reason], True
    if verdict.action == rules.RETIRE:
        work.move(challenger_alias, ledger.RETIRE, None, verdict)
    return [verdict.reason], False


def champion_step(work: Review, batch: int) -> list[str]:
    """A champion that was promoted (not rolled back to) and not checked yet: scored with
    the version it replaced on the batch; kept or rolled back."""
    settings = work.settings
    alias = settings.mlflow.model_alias
    champion = aliases(work.client, settings).get(alias)
    moved = [m for m in ledger.moves(work.engine, work.name) if m.alias == alias]
    last = moved[-1] if moved else None
    if (
        champion is None
        or last is None
        or last.action != ledger.PROMOTE
        or last.to_version != champion
        or last.from_version is None
        or CHECKED in work.version(champion).tags
    ):
        return []
    previous = last.from_version
    fresh = work.fresh(batch, previous, champion)
    if fresh is None:
        return [f"champion v{champion}: no fresh rows in batch {batch} to check it on yet"]
    verdict = rules.judge_champion(champion, previous, fresh, settings.release.rollback_margin)
    if verdict.action == rules.ROLL_BACK:
        work.move(alias, ledger.AUTOMATIC_ROLLBACK, previous, verdict)
    else:
        work.client.set_model_version_tag(work.name, champion, CHECKED, str(batch))
        work.client.set_model_version_tag(work.name, champion, "release.checked", verdict.reason)
    return [verdict.reason]


def batch_rows(engine: sa.Engine, batch: int) -> pd.DataFrame:
    """The batch's features and labels."""
    from covertype.monitor.reference import typed

    table = db.cover_type
    columns = [table.c[n] for n in (*schema.FEATURES, schema.LABEL)]
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(*columns).where(table.c.batch_number == batch), conn)
    return typed(frame)


def shadow_stats(engine: sa.Engine, challenger: str, champion: str) -> rules.Shadow:
    """The challenger's newest shadow answers beside this champion's."""
    table = db.shadow_predictions
    query = (
        sa.select(
            table.c.champion_cover_type,
            table.c.challenger_cover_type,
            table.c.champion_predict_us,
            table.c.challenger_predict_us,
        )
        .where(table.c.challenger_version == challenger, table.c.champion_version == champion)
        .order_by(table.c.id.desc())
        .limit(SHADOW_ROWS)
    )
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    if frame.empty:
        return rules.Shadow()
    answered = frame.dropna(subset=["challenger_cover_type"])
    agree = (answered["challenger_cover_type"] == answered["champion_cover_type"]).mean()
    return rules.Shadow(
        records=len(frame),
        agreement=float(agree) if len(answered) else None,
        errors=len(frame) - len(answered),
        champion_p99_us=float(frame["champion_predict_us"].quantile(0.99)),
        challenger_p99_us=(
            float(answered["challenger_predict_us"].quantile(0.99)) if len(answered) else None
        ),
    )


def _since(stamp: str | None) -> float:
    """Seconds since an ISO time tag (0 when there is none)."""
    if not stamp:
        return 0.0
    return (datetime.now(UTC) - datetime.fromisoformat(stamp).astimezone(UTC)).total_seconds()
