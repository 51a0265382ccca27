"""The retraining policy: train when it pays, otherwise skip with a reason a person reads."""

import pytest

from covertype.retraining.policy import DriftFacts, RetrainFacts, retrain_decision

NO_DRIFT = DriftFacts(5, False, 3, 12, 0.25, 0.5)
DRIFT = DriftFacts(6, True, 9, 12, 0.75, 0.5)


def facts(**changes) -> RetrainFacts:
    values = dict(
        champion_version="3",
        champion_rows=25_400,
        rows_now=25_400 + 2_310,
        drift=NO_DRIFT,
        min_new_rows_percent=20.0,
    )
    return RetrainFacts(**(values | changes))


def test_no_drift_and_few_new_rows_is_skipped_saying_both():
    decision = retrain_decision(facts())
    assert not decision.train
    assert decision.reason == (
        "no drift in batch 5 (3 of 12 features drifted, share 0.25 < 0.5) and 2,310 new rows "
        "since v3's training are 9% of the 25,400 it read (< 20%)"
    )
    assert decision.facts.new_rows == 2_310


def test_drift_trains_whatever_the_new_rows():
    decision = retrain_decision(facts(drift=DRIFT))
    assert decision.train
    assert decision.reason.startswith(
        "drift in batch 6 (9 of 12 features drifted, share 0.75 ≥ 0.5); 2,310 new rows"
    )


@pytest.mark.parametrize(("new_rows", "train"), [(5_079, False), (5_080, True), (25_400, True)])
def test_new_rows_train_from_the_threshold_on(new_rows, train):
    decision = retrain_decision(facts(rows_now=25_400 + new_rows))
    assert decision.train is train  # 5,080 is exactly 20% of 25,400
    if train:
        assert decision.reason.startswith(f"{new_rows:,} new rows since v3's training are")
        assert "(≥ 20%)" in decision.reason


def test_the_threshold_is_the_setting():
    assert retrain_decision(facts(min_new_rows_percent=5)).train
    assert not retrain_decision(facts(min_new_rows_percent=50, rows_now=25_400 * 14 // 10)).train


def test_no_champion_trains():
    decision = retrain_decision(facts(champion_version=None, champion_rows=0, drift=None))
    assert decision.train and decision.reason == "no champion yet; 27,710 rows to train on"


def test_no_rows_at_all_is_skipped():
    decision = retrain_decision(facts(champion_version=None, champion_rows=0, rows_now=0))
    assert not decision.train and "cover_type has no rows yet" in decision.reason


def test_by_hand_always_trains():
    decision = retrain_decision(facts(manual=True))
    assert decision.train and decision.reason == "training requested by hand"


def test_no_drift_report_yet_counts_as_no_drift_and_says_so():
    decision = retrain_decision(facts(drift=None))
    assert not decision.train
    assert decision.reason.startswith("no drift report against champion v3 yet and 2,310")


def test_decision_is_plain_data_for_an_xcom():
    body = retrain_decision(facts()).as_dict()
    assert body["train"] is False and body["facts"]["drift"]["share"] == 0.25
