"""The champion gate's rule, without MLflow: when the alias moves, and what it says why."""

from covertype.serve.serving_cost import ServingCost
from covertype.train.gate import Champion, Decision, decide


def gate(new: float, champion: Champion | None) -> Decision:
    return decide(new, champion, holdout_rows=812, model_name="covertype", alias="champion")


def test_without_a_champion_the_new_version_is_promoted():
    assert gate(0.5, None) == Decision(True, "promoted: covertype had no champion yet")


def test_a_champion_that_cannot_be_scored_is_replaced():
    assert gate(0.5, Champion("3", None)) == Decision(
        True, "promoted: champion v3 could not be scored"
    )


def test_a_better_model_is_promoted_naming_both_scores_and_the_rows():
    assert gate(0.91234, Champion("3", 0.9)) == Decision(
        True, "promoted: macro F1 0.9123 beats champion v3's 0.9000 on the same 812 held-out rows"
    )
    # Better by less than the text shows is still better: the rule compares the numbers.
    assert gate(0.9 + 1e-9, Champion("3", 0.9)).promoted


def test_an_equal_model_keeps_the_champion():
    assert gate(0.9, Champion("3", 0.9)) == Decision(
        False,
        "kept champion v3: its macro F1 0.9000 is not beaten by 0.9000 on the same 812 "
        "held-out rows",
    )


def test_a_worse_model_keeps_the_champion():
    decision = gate(0.7, Champion("4", 0.9))
    assert not decision.promoted
    assert decision.text == (
        "kept champion v4: its macro F1 0.9000 is not beaten by 0.7000 on the same 812 "
        "held-out rows"
    )


# ---------------------------------------------------------------- the serving budget


def cost(single_row_us: float) -> ServingCost:
    return ServingCost(single_row_us, single_row_us * 1.3, single_row_us / 4, "fast", 300)


def budgeted(new: float, champion: Champion | None, us: float, budget: float) -> Decision:
    return decide(new, champion, 812, "covertype", "champion", cost(us), budget)


def test_a_version_over_the_budget_is_refused_naming_its_cost_and_the_budget():
    for champion in (None, Champion("3", 0.5, cost(100))):
        assert budgeted(0.99, champion, 612.4, 400) == Decision(
            False,
            "refused: one row costs 612 µs to serve, over the budget of 400 µs "
            "(COVERTYPE_SERVE_BUDGET_US)",
        )
    assert budgeted(0.99, None, 400, 400).promoted  # the budget itself is within it


def test_no_budget_admits_any_cost():
    assert budgeted(0.99, Champion("3", 0.9, cost(100)), 50_000, 0).promoted


def test_a_champion_over_the_budget_gives_way_to_a_version_within_it():
    decision = budgeted(0.7, Champion("4", 0.9, cost(900)), 200, 400)
    assert decision == Decision(
        True, "promoted: champion v4 costs 900 µs a row, over the budget of 400 µs"
    )
    # A champion with no measured cost (trained before costs were) is judged on macro F1.
    assert not budgeted(0.7, Champion("4", 0.9), 200, 400).promoted
