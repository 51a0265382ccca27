"""The champion's behaviour through the inference API, the way a user calls it: accepted
spellings and field order do not change an answer, nor do the other records of a batch;
every field counts; Krummholz becomes likelier as only the elevation rises.

The records are the first 1,000 of the holdout (ordered by row key): real rows the champion
never trained on.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from covertype import schema
from covertype.serve.onnx_trees import ONNX_TOLERANCE
from tests.support.data import records_of

RECORDS = 1000  # COVERTYPE_SERVE_MAX_BATCH: one /predict/batch call
KRUMMHOLZ = schema.COVER_TYPE_NAMES[6]


@pytest.fixture(scope="module")
def records(champion) -> list[dict]:
    return records_of(champion.holdout.X.iloc[:RECORDS])


@pytest.fixture(scope="module")
def answers(api, records) -> list[dict]:
    return predict(api, records)


def predict(api, records: list[dict]) -> list[dict]:
    answer = api.post("/predict/batch", json=records)
    assert answer.status_code == 200, answer.text
    return answer.json()


def classes(answers: list[dict]) -> np.ndarray:
    return np.array([a["cover_type"] for a in answers])


# ---------------------------------------------------------------- invariance

# Every spelling schema.py accepts besides the canonical one: names in any case with any
# spaces, the long names of two areas; soils by C-code in any case, ELU number or UCI index
# (string or JSON number, "Soil_Type" prefix too); numbers as strings, floats, padded text.
WILDERNESS_SPELLINGS = {
    "Rawah": ["rawah", "RAWAH", "  Rawah "],
    "Neota": ["neota", "NEOTA", " neota"],
    "Commanche": ["Comanche", "commanche peak", "Comanche  Peak"],
    "Cache": ["Cache la Poudre", "cache la poudre", "CACHE"],
}


def soil_spellings(code: str) -> list:
    elu, uci = int(code[1:]), schema.SOIL_TYPES.index(code) + 1
    return [code.lower(), f" {code} ", str(elu), elu, str(uci), uci, f"Soil_Type{uci}"]


def number_spellings(value: int) -> list:
    return [str(value), float(value), f"{value}.0", f" {value} "]


def respelled(record: dict, i: int) -> dict:
    """`record` with every field in another accepted spelling (which one varies with i)."""
    out = {}
    for j, (name, value) in enumerate(record.items()):
        if name == schema.WILDERNESS:
            options = WILDERNESS_SPELLINGS[value]
        elif name == schema.SOIL:
            options = soil_spellings(value)
        else:
            options = number_spellings(value)
        out[name] = options[(i + j) % len(options)]
    return out


def test_every_accepted_spelling_gets_the_answer_of_the_canonical_record(api, records, answers):
    assert len(set(classes(answers))) >= 4  # real rows: the comparison is not of one answer
    variants = [respelled(record, i) for i, record in enumerate(records)]
    assert predict(api, variants) == answers
    for record, variant in zip(records[:40], variants[:40], strict=True):
        single = api.post("/predict", json=variant)
        assert single.status_code == 200, (variant, single.text)
        assert single.json() == api.post("/predict", json=record).json()


def test_the_order_of_the_fields_in_a_record_does_not_change_its_answer(api, records, answers):
    for order in (reversed, sorted):
        body = json.dumps([{k: r[k] for k in order(list(r))} for r in records])
        answer = api.post(
            "/predict/batch", content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == answers


def test_a_records_answer_does_not_depend_on_the_other_records_sent_with_it(api, records, answers):
    shuffled = np.random.default_rng(0).permutation(len(records))
    assert predict(api, [records[i] for i in shuffled]) == [answers[i] for i in shuffled]
    small = [a for i in range(0, 100, 10) for a in predict(api, records[i : i + 10])]
    assert small == answers[:100]  # batches under 64 records are answered on the event loop
    # Alone, through /predict (LightGBM's single-row path, not the batch's ONNX trees).
    for record, in_batch in zip(records[:100], answers[:100], strict=True):
        alone = api.post("/predict", json=record).json()
        assert alone["cover_type"] == in_batch["cover_type"]
        difference = np.subtract(
            list(alone["probabilities"].values()), list(in_batch["probabilities"].values())
        )
        assert np.abs(difference).max() <= ONNX_TOLERANCE


# No field is irrelevant, so no field gets an invariance test. Measured 2026-12-06 on these
# 1,000 records: giving each record another record's value of one field changes 2.0% (Slope),
# 2.2% (Hillshade_3pm), 2.3% (Wilderness_Area) ... 46% (Elevation) of the answers; even +1°
# of Slope changes 0.6% of 4,024 holdout answers. Aspect 0° and 360° (the same direction)
# get different answers for 5.3% of them. What holds instead: a field the model ignored
# (dropped by an encoding change, say) would change none.
FIELD_CHANGES_FLOOR = 0.005


@pytest.mark.parametrize("field", schema.FEATURES)
def test_every_field_of_the_record_changes_some_answers(real_covtype, api, records, answers, field):
    others = np.random.default_rng(0).permutation(len(records))
    moved = [r | {field: records[k][field]} for r, k in zip(records, others, strict=True)]
    changed = np.mean(classes(predict(api, moved)) != classes(answers))
    assert changed >= FIELD_CHANGES_FLOOR, f"{field} changed {changed:.1%} of the answers"


# ---------------------------------------------------------------- direction

# Krummholz grows at the tree line. In the real data (403,383 rows, 14,765 of Krummholz) its
# lowest row is at 2870 m, its 5th-95th percentiles 3217-3520 m; its share of the rows rises
# with elevation: 0.06% at 2800-3000 m, 0% at 3000-3100, 0.8% at 3100-3200, 6.5% at
# 3200-3300, 31% at 3300-3400, 55% at 3400-3500 m. So the probability of Krummholz must rise
# when only a record's elevation does. Measured 2026-12-06 on these 1,000 records: mean
# P(Krummholz) 0.0001, 0.015, 0.074, 0.45 at 3100, 3200, 3300, 3400 m; from 2800 to 3400 m
# it rises for 999 of the records (one falls by 3e-5).
LADDER = (3100, 3200, 3300, 3400)
LOW, HIGH = 2800, 3400


def test_krummholz_becomes_likelier_as_only_the_elevation_rises(real_covtype, api, records):
    def krummholz(elevation: int) -> np.ndarray:
        answers = predict(api, [r | {"Elevation": elevation} for r in records])
        return np.array([a["probabilities"][KRUMMHOLZ] for a in answers])

    low, high = krummholz(LOW), krummholz(HIGH)
    assert low.mean() < 0.01 and high.mean() > 0.25, (low.mean(), high.mean())
    assert np.mean(high > low) >= 0.99
    means = [krummholz(elevation).mean() for elevation in LADDER]
    assert all(np.diff(means) > 0), dict(zip(LADDER, means, strict=True))
