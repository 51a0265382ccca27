"""The champion gate: a new version passes only when it is within the serving budget and
beats the current champion's macro F1, both scored on the same held-out rows of today's
data (or the champion is over the budget).

`decide` is the rule (pure); `apply` is the MLflow step: it scores the champion, tags the new
version with the decision, then moves an alias (covertype.release.moves, with its ledger
row), so a version is fully described before anything serves it. A version that passes
becomes `challenger` (COVERTYPE_RELEASE_MODE=shadow, the default: the API shadows it and the
next batch's review promotes or retires it), or `champion` at once when there is no champion
yet or the mode is `direct`.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import NamedTuple

from covertype.serve.serving_cost import ServingCost
from covertype.settings import Settings
from covertype.train import evaluate
from covertype.train.data import Share

log = logging.getLogger(__name__)


class Champion(NamedTuple):
    version: str
    macro_f1: float | None  # None: it could not be scored on today's holdout
    cost: ServingCost | None = None  # None: registered before costs were measured


@dataclass(frozen=True)
class Decision:
    promoted: bool  # the version passed the gate
    text: str
    alias: str | None = None  # the alias it took (champion or challenger), set by `apply`


def decide(
    new_macro_f1: float,
    champion: Champion | None,
    holdout_rows: int,
    model_name: str,
    alias: str,
    cost: ServingCost | None = None,
    budget_us: float = 0.0,
) -> Decision:
    """Refuse a new model over the serving budget (`budget_us` of a single-row answer, 0:
    none); otherwise promote when there is no champion, it cannot be scored, it is over the
    budget, or the new model beats it; a tie keeps the champion."""
    if cost is not None and not cost.within(budget_us):
        return Decision(
            False,
            f"refused: one row costs {cost.single_row_us:.0f} µs to serve, over the budget of "
            f"{budget_us:g} µs (COVERTYPE_SERVE_BUDGET_US)",
        )
    if champion is None:
        return Decision(True, f"promoted: {model_name} had no {alias} yet")
    version, old, old_cost = champion
    if budget_us and old_cost is not None and not old_cost.within(budget_us):
        return Decision(
            True,
            f"promoted: champion v{version} costs {old_cost.single_row_us:.0f} µs a row, over "
            f"the budget of {budget_us:g} µs",
        )
    if old is None:
        return Decision(True, f"promoted: champion v{version} could not be scored")
    if new_macro_f1 > old:
        return Decision(
            True,
            f"promoted: macro F1 {new_macro_f1:.4f} beats champion v{version}'s "
            f"{old:.4f} on the same {holdout_rows} held-out rows",
        )
    return Decision(
        False,
        f"kept champion v{version}: its macro F1 {old:.4f} is not beaten "
        f"by {new_macro_f1:.4f} on the same {holdout_rows} held-out rows",
    )


def score_champion(client, settings: Settings, holdout: Share) -> Champion | None:
    """The current champion and its macro F1 on `holdout`; None if there is no champion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(settings.mlflow.model_name).aliases
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if settings.mlflow.model_alias not in aliases:
        return None
    current = client.get_model_version(
        settings.mlflow.model_name, aliases[settings.mlflow.model_alias]
    )
    cost = ServingCost.from_tags(current.tags or {})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = mlflow.sklearn.load_model(
                f"models:/{settings.mlflow.model_name}/{current.version}", dst_path=tmp
            )
            predicted = model.predict(holdout.X)
    except Exception:
        log.exception("champion could not be scored", extra={"version": current.version})
        return Champion(current.version, None, cost)
    return Champion(current.version, evaluate.macro_f1(holdout.y, predicted), cost)


def apply(
    client,
    settings: Settings,
    version: str,
    new_macro_f1: float,
    holdout: Share,
    holdout_hash: str,
    cost: ServingCost | None = None,
) -> tuple[Decision, Champion | None]:
    """Score the champion, decide, tag `version` (and the active run) with the decision and
    both scores, and move the alias to `version` if it won."""
    import mlflow

    name, alias = settings.mlflow.model_name, settings.mlflow.model_alias
    budget = settings.serve.budget_us
    champion = score_champion(client, settings, holdout)
    decision = decide(new_macro_f1, champion, len(holdout), name, alias, cost, budget)
    tags = {
        "gate.decision": decision.text,
        "gate.promoted": str(decision.promoted).lower(),
        "gate.new_macro_f1": f"{new_macro_f1:.6f}",
        "gate.champion_version": champion.version if champion else "",
        "gate.champion_macro_f1": (
            f"{champion.macro_f1:.6f}" if champion and champion.macro_f1 is not None else ""
        ),
        "gate.holdout_rows": str(len(holdout)),
        "gate.holdout_hash": holdout_hash,
        "gate.budget_us": f"{budget:g}",
    }
    # The challenger's probation is for a champion that can stay meanwhile: not for none,
    # one that cannot be scored, or one over the budget.
    can_stay = (
        champion is not None
        and champion.macro_f1 is not None
        and (champion.cost is None or champion.cost.within(budget))
    )
    if decision.promoted and can_stay and settings.release.mode == "shadow":
        alias = settings.release.challenger_alias
        decision = Decision(
            True,
            f"{decision.text.replace('promoted: ', 'challenger: ', 1)}; shadowed until a "
            "fresh batch decides (COVERTYPE_RELEASE_MODE=shadow)",
        )
        tags["gate.decision"] = decision.text
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=decision.text)
    if decision.promoted:
        _release(client, settings, alias, version, decision.text, tags)
        decision = Decision(True, decision.text, alias)
    mlflow.set_tags(tags | {"version": version})
    if champion and champion.macro_f1 is not None:
        mlflow.log_metric("gate_champion_macro_f1", champion.macro_f1)
    mlflow.log_metric("gate_new_macro_f1", new_macro_f1)
    return decision, champion


def _release(client, settings: Settings, alias: str, version: str, text: str, tags: dict):
    """`alias` to `version` through the release ledger; a challenger it replaces is retired
    first (a newer version beat the champion since)."""
    import mlflow

    from covertype.release import ledger
    from covertype.release.moves import aliases, move

    actor = f"training run {mlflow.active_run().info.run_id}"  # type: ignore[union-attr]
    scores = {k.removeprefix("gate."): v for k, v in tags.items() if k != "gate.decision"}
    waiting = aliases(client, settings).get(alias)
    if alias == settings.release.challenger_alias and waiting not in (None, version):
        why = f"replaced by v{version}, which passed the gate after it"
        move(client, settings, alias=alias, action=ledger.RETIRE, to_version=None,
             actor=actor, reason=why, scores=scores)  # fmt: skip
    action = ledger.PROMOTE if alias == settings.mlflow.model_alias else ledger.CHALLENGE
    move(client, settings, alias=alias, action=action, to_version=version, actor=actor,
         reason=text, scores=scores)  # fmt: skip
