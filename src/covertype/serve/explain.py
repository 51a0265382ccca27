"""One prediction explained: LightGBM's SHAP values (`pred_contrib`) of the predicted class,
summed over the encoded and derived columns back to the 12 input fields."""

from __future__ import annotations

import numpy as np

from covertype import schema
from covertype.errors import CovertypeError
from covertype.serve.predictors import FastPredictor, LightGBMModel, Predictor
from covertype.serve.responses import Contribution, Explanation


class NotExplainable(CovertypeError):
    """The served model gives no per-feature contributions (HTTP 501)."""

    status = 501


def explain(predictor: Predictor, family: str | None, record: dict, version: str, top: int):
    """The Explanation of `record`'s prediction; NotExplainable naming the family if none."""
    model = getattr(predictor, "model", None)
    if not isinstance(predictor, FastPredictor) or not isinstance(model, LightGBMModel):
        kind = (
            getattr(predictor, "model_kind", None)
            or type(getattr(predictor, "pipeline", predictor)).__name__
        )
        if isinstance(predictor, FastPredictor) or family != "lightgbm":
            raise NotExplainable(
                f"explanations need per-feature contributions, which the family "
                f"{family or 'unknown'!r} ({kind}) does not give; lightgbm models have them"
            )
        raise NotExplainable(
            f"the {family} model is served by its pipeline ({kind}), without the fast path "
            "that explanations use; see GET /model predictor_note"
        )
    matrix = predictor.encode((record,))
    label, proba = predictor.classify_one(record)
    assert proba is not None  # LightGBMModel.predict_proba always gives them
    column = int(np.flatnonzero(model.classes == label)[0])
    values = model.contributions(matrix)[0]
    values = values[column] if len(values) > 1 else values[0] * (1 if column else -1)
    by_field = values[:-1] @ predictor.encoder.shares
    order = np.argsort(-np.abs(by_field), kind="stable")[:top]
    name = schema.COVER_TYPE_NAMES[label]
    return Explanation(
        cover_type=label,
        cover_type_name=name,
        model_version=version,
        probabilities=dict(zip(schema.COVER_TYPE_NAMES, proba.tolist(), strict=True)),
        explained_class=name,
        base_value=float(values[-1]),
        contributions=[
            Contribution(
                field=schema.FEATURES[i],
                value=record[schema.FEATURES[i]],
                contribution=float(by_field[i]),
                text=f"{schema.FEATURES[i]} {by_field[i]:+.2f}",
            )
            for i in order
        ],
    )
