"""The Predict tab: one record from a form (every value valid by construction: bounded
numbers, the canonical vocabularies), its class, probabilities and explanation. Query
parameters prefill the form (`?Elevation=3000&Soil_Type=C7745`) and `predict=1` predicts
at once, so a prediction can be shared as a link."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from covertype import schema
from covertype.serve.records import EXAMPLE
from covertype.settings import Settings
from covertype.ui.api_client import ApiError, call

LABELS = {
    "Horizontal_Distance_To_Hydrology": "Horizontal distance to water (m)",
    "Vertical_Distance_To_Hydrology": "Vertical distance to water (m)",
    "Horizontal_Distance_To_Roadways": "Distance to roadways (m)",
    "Horizontal_Distance_To_Fire_Points": "Distance to fire points (m)",
}


def soil_label(code: str) -> str:
    number = schema.SOIL_TYPES.index(code) + 1
    return f"UCI soil {number} · ELU {code}"


def form_defaults() -> dict:
    """The API's example record (a real row), overridden by valid query parameters."""
    values = dict(EXAMPLE)
    for name in schema.FEATURES:
        if name in st.query_params:
            try:
                values[name] = schema.check_value(name, st.query_params[name])
            except schema.FieldError as error:
                st.warning(f"Query parameter ignored: {error}")
    return values


def predict_tab(settings: Settings) -> None:
    defaults = form_defaults()
    with st.form("record"):
        columns = st.columns(3)
        record: dict[str, object] = {}
        for i, field in enumerate(schema.NUMERIC_FIELDS):
            label = LABELS.get(field.name, field.name.replace("_", " "))
            record[field.name] = columns[i % 3].number_input(
                f"{label} [{field.low}, {field.high}]",
                min_value=field.low,
                max_value=field.high,
                value=int(defaults[field.name]),
                step=1,
                key=field.name,
            )
        record[schema.WILDERNESS] = columns[1].selectbox(
            "Wilderness area",
            schema.WILDERNESS_AREAS,
            index=schema.WILDERNESS_AREAS.index(defaults[schema.WILDERNESS]),
            key=schema.WILDERNESS,
        )
        record[schema.SOIL] = columns[2].selectbox(
            "Soil type",
            schema.SOIL_TYPES,
            index=schema.SOIL_TYPES.index(defaults[schema.SOIL]),
            format_func=soil_label,
            key=schema.SOIL,
        )
        submitted = st.form_submit_button("Predict", type="primary")
    if submitted or st.query_params.get("predict") == "1":
        try:
            answer = call(settings, "POST", "/predict", json=record)
        except ApiError as error:
            st.error(str(error))
            return
        assert isinstance(answer, dict)  # POST /predict answers a Prediction object
        st.success(
            f"**{answer['cover_type_name']}** — class {answer['cover_type']}, "
            f"model version {answer['model_version']}"
        )
        if answer.get("probabilities"):  # a model without them (svm) answers null
            chances = pd.DataFrame(
                {"probability": answer["probabilities"].values()},
                index=pd.Index(list(answer["probabilities"]), name="class"),
            )
            st.bar_chart(chances, horizontal=True, y_label="", x_label="probability")
        try:
            why = call(settings, "POST", "/predict/explain", json=record)
            assert isinstance(why, dict)  # an Explanation object
            st.markdown(
                f"**Why {why['explained_class']}** (SHAP, log-odds): "
                + " · ".join(c["text"] for c in why["contributions"])
            )
        except ApiError as error:  # e.g. 501: the family has no explanations
            st.caption(str(error))
