"""The release rules (covertype.release.rules): promote, retire, wait, keep, roll back."""

from __future__ import annotations

import pytest

from covertype.release.rules import (
    KEEP,
    PROMOTE,
    RETIRE,
    ROLL_BACK,
    WAIT,
    Fresh,
    Shadow,
    judge_challenger,
    judge_champion,
)
from covertype.settings.release import ReleaseSettings

RULES = ReleaseSettings()  # tolerance 0.005, factor 1.5, 100 shadow rows, 3600 s, margin 0.02
FAST = Shadow(records=500, agreement=0.9, errors=0, champion_p99_us=200, challenger_p99_us=250)


def challenger(fresh, shadow=FAST, cost=150.0, budget=300.0, waited=10.0):
    return judge_challenger("1", "2", fresh, shadow, cost, budget, waited, RULES)


def test_a_challenger_within_the_tolerance_is_promoted_naming_its_figures():
    verdict = challenger(Fresh(7, 4000, "macro F1", old=0.80, new=0.796))
    assert verdict.action == PROMOTE
    assert verdict.reason == (
        "promoted v2 over v1: macro F1 0.7960 on 4,000 fresh rows of batch 7 against 0.8000; "
        "shadow p99 250 µs against the champion's 200 µs over 500 records, 90.0% agreement"
    )
    assert verdict.scores["fresh_new"] == 0.796 and verdict.scores["shadow_records"] == 500


def test_a_challenger_below_the_tolerance_is_retired():
    verdict = challenger(Fresh(7, 4000, "macro F1", old=0.80, new=0.7949))
    assert verdict.action == RETIRE
    assert "below champion v1's 0.8000 minus 0.005 (COVERTYPE_RELEASE_F1_TOLERANCE)" in (
        verdict.reason
    )


def test_a_challenger_slower_than_the_factor_is_retired_even_when_more_accurate():
    slow = Shadow(records=500, agreement=0.9, champion_p99_us=200, challenger_p99_us=301)
    verdict = challenger(Fresh(7, 4000, "macro F1", old=0.80, new=0.90), shadow=slow)
    assert verdict.action == RETIRE
    assert "shadow p99 301 µs a record is over 1.5 × the champion's 200 µs" in verdict.reason


def test_a_challenger_within_the_budget_is_fast_enough_whatever_the_champion_costs():
    tiny = Shadow(records=500, agreement=0.5, champion_p99_us=40, challenger_p99_us=290)
    assert challenger(Fresh(7, 4000, "macro F1", 0.5, 0.8), shadow=tiny).action == PROMOTE
    unbounded = challenger(Fresh(7, 4000, "macro F1", 0.5, 0.8), shadow=tiny, budget=0)
    assert unbounded.action == RETIRE and "over 1.5 × the champion's 40 µs" in unbounded.reason


def test_a_challenger_that_fails_its_shadow_predictions_is_retired():
    failing = Shadow(records=500, agreement=1.0, errors=6, champion_p99_us=200,
                     challenger_p99_us=100)  # fmt: skip
    verdict = challenger(Fresh(7, 4000, "macro F1", old=0.80, new=0.90), shadow=failing)
    assert verdict.action == RETIRE and "failed 6 of its 500 shadow predictions" in verdict.reason


@pytest.mark.parametrize(("cost", "action"), [(299.0, PROMOTE), (301.0, RETIRE), (None, PROMOTE)])
def test_too_few_shadow_answers_judge_the_latency_on_the_serving_cost(cost, action):
    few = Shadow(records=99, agreement=1.0, champion_p99_us=200, challenger_p99_us=10_000)
    verdict = challenger(Fresh(7, 4000, "macro F1", 0.80, 0.80), shadow=few, cost=cost)
    assert verdict.action == action, verdict.reason
    if action == RETIRE:
        assert "one row costs 301 µs to serve, over the budget of 300 µs" in verdict.reason
    else:
        assert "latency judged on its measured serving cost" in verdict.reason


def test_without_fresh_rows_a_challenger_waits_until_the_maximum_then_is_decided():
    assert challenger(None, waited=3599).action == WAIT
    late = challenger(None, waited=3600)
    assert late.action == PROMOTE
    assert "no fresh batch in 3600 s (COVERTYPE_CHALLENGER_MAX_WAIT_SECONDS)" in late.reason
    slow = Shadow(records=500, champion_p99_us=100, challenger_p99_us=500)
    assert challenger(None, shadow=slow, waited=7200).action == RETIRE


def test_a_promoted_champion_is_rolled_back_only_beyond_the_margin():
    kept = judge_champion("2", "1", Fresh(8, 3000, "macro F1", old=0.80, new=0.781), 0.02)
    assert kept.action == KEEP
    assert (
        kept.reason == "kept v2: macro F1 0.7810 on 3,000 fresh rows of batch 8 against v1's 0.8000"
    )
    back = judge_champion("2", "1", Fresh(8, 3000, "accuracy", old=0.80, new=0.779), 0.02)
    assert back.action == ROLL_BACK
    assert back.reason.startswith("rolled back v2 to v1: its accuracy 0.7790 on 3,000 fresh rows")
    assert back.scores["margin"] == 0.02
