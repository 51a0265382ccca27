"""The release rules, pure: what the review (covertype.release.review) does with the
figures it gathered. `judge_challenger`: promote, retire, or wait for fresh rows.
`judge_champion`: after a promotion, keep the new champion or roll it back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from covertype.settings.release import ReleaseSettings

PROMOTE, RETIRE, WAIT, KEEP, ROLL_BACK = "promote", "retire", "wait", "keep", "roll back"
MAX_ERROR_SHARE = 0.01  # shadow answers a challenger may fail before it is retired


@dataclass(frozen=True)
class Fresh:
    """Two versions scored on the same labelled rows, which neither trained on."""

    batch: int
    rows: int
    metric: str  # "macro F1", or "accuracy" for a batch of a single class
    old: float  # the version in place (the champion; the previous champion)
    new: float  # the version judged (the challenger; the new champion)


@dataclass(frozen=True)
class Shadow:
    """The challenger's shadow answers beside the champion's (the API's shadow_predictions)."""

    records: int = 0
    agreement: float | None = None
    errors: int = 0
    champion_p99_us: float | None = None
    challenger_p99_us: float | None = None


@dataclass(frozen=True)
class Verdict:
    action: str
    reason: str
    scores: dict[str, Any] = field(default_factory=dict)


def _scores(fresh: Fresh | None, shadow: Shadow | None, **more: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if fresh is not None:
        found |= {f"fresh_{k}": v for k, v in asdict(fresh).items()}
    if shadow is not None:
        found |= {f"shadow_{k}": v for k, v in asdict(shadow).items()}
    return found | {k: v for k, v in more.items() if v is not None}


def latency_problem(
    shadow: Shadow, cost_us: float | None, budget_us: float, rules: ReleaseSettings
) -> str | None:
    """Why the challenger is too slow to serve, or None: once there are enough shadow
    answers, its p99 predict time per record (CPU) against the larger of the budget and
    the factor times the champion's; before, its measured serving cost against the budget."""
    if shadow.records and shadow.errors / shadow.records > MAX_ERROR_SHARE:
        return (
            f"it failed {shadow.errors} of its {shadow.records} shadow predictions "
            f"(more than {MAX_ERROR_SHARE:.0%})"
        )
    if (
        shadow.records >= rules.min_shadow_rows
        and shadow.challenger_p99_us is not None
        and shadow.champion_p99_us
    ):
        # Within the serving budget is fast enough, whatever the champion costs (a tiny
        # champion would otherwise block every real model); over it, no slower than the
        # factor allows.
        limit = max(rules.latency_factor * shadow.champion_p99_us, budget_us)
        if shadow.challenger_p99_us > limit:
            budget = f" and the budget of {budget_us:g} µs" if budget_us else ""
            return (
                f"its shadow p99 {shadow.challenger_p99_us:.0f} µs a record is over "
                f"{rules.latency_factor:g} × the champion's {shadow.champion_p99_us:.0f} µs "
                f"(COVERTYPE_RELEASE_LATENCY_FACTOR){budget}"
            )
        return None
    if cost_us is not None and budget_us and cost_us > budget_us:
        return f"one row costs {cost_us:.0f} µs to serve, over the budget of {budget_us:g} µs"
    return None


def latency_note(shadow: Shadow, rules: ReleaseSettings) -> str:
    if shadow.records >= rules.min_shadow_rows and shadow.challenger_p99_us is not None:
        agree = "" if shadow.agreement is None else f", {shadow.agreement:.1%} agreement"
        return (
            f"shadow p99 {shadow.challenger_p99_us:.0f} µs against the champion's "
            f"{shadow.champion_p99_us or 0:.0f} µs over {shadow.records} records{agree}"
        )
    return (
        f"{shadow.records} shadow answers, fewer than {rules.min_shadow_rows} "
        "(COVERTYPE_RELEASE_MIN_SHADOW_ROWS): latency judged on its measured serving cost"
    )


def judge_challenger(
    champion: str,
    challenger: str,
    fresh: Fresh | None,
    shadow: Shadow,
    cost_us: float | None,
    budget_us: float,
    waited_seconds: float,
    rules: ReleaseSettings,
) -> Verdict:
    """Promote when, on fresh rows, the challenger's score is at least the champion's minus
    the tolerance and its latency is within bounds; retire otherwise. Without fresh rows,
    wait, unless it waited longer than COVERTYPE_CHALLENGER_MAX_WAIT_SECONDS: then it is
    decided on its latency alone (it already beat the champion at the gate)."""
    slow = latency_problem(shadow, cost_us, budget_us, rules)
    scores = _scores(fresh, shadow, cost_us=cost_us, waited_seconds=round(waited_seconds))
    if fresh is None:
        if waited_seconds < rules.max_wait_seconds:
            return Verdict(WAIT, f"challenger v{challenger}: no fresh labelled rows yet", scores)
        waited = (
            f"no fresh batch in {waited_seconds:.0f} s (COVERTYPE_CHALLENGER_MAX_WAIT_SECONDS): "
            "decided on its gate and its shadow answers"
        )
        if slow:
            return Verdict(RETIRE, f"retired v{challenger}: {waited}; {slow}", scores)
        return Verdict(
            PROMOTE,
            f"promoted v{challenger} over v{champion}: {waited}; {latency_note(shadow, rules)}",
            scores,
        )
    where = f"on {fresh.rows:,} fresh rows of batch {fresh.batch}"
    floor = fresh.old - rules.f1_tolerance
    if fresh.new < floor:
        return Verdict(
            RETIRE,
            f"retired v{challenger}: {fresh.metric} {fresh.new:.4f} {where}, below champion "
            f"v{champion}'s {fresh.old:.4f} minus {rules.f1_tolerance:g} "
            "(COVERTYPE_RELEASE_F1_TOLERANCE)",
            scores,
        )
    if slow:
        return Verdict(RETIRE, f"retired v{challenger}: {slow}", scores)
    return Verdict(
        PROMOTE,
        f"promoted v{challenger} over v{champion}: {fresh.metric} {fresh.new:.4f} {where} "
        f"against {fresh.old:.4f}; {latency_note(shadow, rules)}",
        scores,
    )


def judge_champion(champion: str, previous: str, fresh: Fresh, margin: float) -> Verdict:
    """After a promotion, the first fresh batch: roll back when the new champion scores
    below the previous one by more than `margin` on the same rows."""
    where = f"on {fresh.rows:,} fresh rows of batch {fresh.batch}"
    scores = _scores(fresh, None, margin=margin)
    if fresh.new < fresh.old - margin:
        return Verdict(
            ROLL_BACK,
            f"rolled back v{champion} to v{previous}: its {fresh.metric} {fresh.new:.4f} {where} "
            f"is below v{previous}'s {fresh.old:.4f} by more than {margin:g} "
            "(COVERTYPE_ROLLBACK_MARGIN)",
            scores,
        )
    return Verdict(
        KEEP,
        f"kept v{champion}: {fresh.metric} {fresh.new:.4f} {where} against v{previous}'s "
        f"{fresh.old:.4f}",
        scores,
    )
