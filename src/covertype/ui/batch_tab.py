"""The Batch tab: a CSV of records checked row by row with the schema module; invalid rows
are reported, the valid ones predicted and offered as a download."""

from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from covertype import schema
from covertype.settings import Settings
from covertype.ui.api_client import ApiError, call


def read_batch(data: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A CSV of records → (valid records, normalised; errors: row, field, reason). Rows are
    numbered as in the file (the header is line 1, the first record row 2)."""
    frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [name for name in schema.FEATURES if name not in frame.columns]
    if missing:
        raise ValueError(
            f"the CSV lacks the column(s) {', '.join(missing)}; it needs a header with "
            f"{', '.join(schema.FEATURES)}"
        )
    valid, errors = [], []
    for i, row in enumerate(frame[list(schema.FEATURES)].to_dict("records")):
        try:
            valid.append({"row": i + 2, **schema.validate_record(row)})
        except schema.RecordError as error:
            errors += [{"row": i + 2, "field": e.field, "reason": str(e)} for e in error.errors]
    return (
        pd.DataFrame(valid, columns=["row", *schema.FEATURES]),
        pd.DataFrame(errors, columns=["row", "field", "reason"]),
    )


def predict_batch(settings: Settings, valid: pd.DataFrame) -> pd.DataFrame:
    answers: list[dict] = []
    records = valid[list(schema.FEATURES)].to_dict("records")
    for start in range(0, len(records), settings.serve.max_batch):
        chunk = records[start : start + settings.serve.max_batch]
        predicted = call(settings, "POST", "/predict/batch", json=chunk)
        assert isinstance(predicted, list)  # POST /predict/batch answers a list of Predictions
        answers += predicted
    result = valid.copy()
    result["cover_type"] = [a["cover_type"] for a in answers]
    result["cover_type_name"] = [a["cover_type_name"] for a in answers]
    result["model_version"] = [a["model_version"] for a in answers]
    return result


def batch_tab(settings: Settings) -> None:
    st.write(
        f"A CSV with a header naming the 12 fields ({', '.join(schema.FEATURES)}); other "
        "columns (e.g. Cover_Type) are ignored. Invalid rows are listed, the others predicted."
    )
    upload = st.file_uploader("Records (CSV)", type=["csv"], key="batch")
    if upload is None:
        return
    try:
        valid, errors = read_batch(upload.getvalue())
    except (ValueError, pd.errors.ParserError) as error:
        st.error(f"Cannot read {upload.name}: {error}")
        return
    if not errors.empty:
        st.warning(f"{errors['row'].nunique()} invalid row(s), not predicted:")
        st.dataframe(errors, hide_index=True)
    if valid.empty:
        st.info("No valid rows to predict.")
        return
    try:
        result = predict_batch(settings, valid)
    except ApiError as error:
        st.error(str(error))
        return
    st.success(f"{len(result)} row(s) predicted by model version {result['model_version'][0]}.")
    st.dataframe(result, hide_index=True)
    st.download_button(
        "Download predictions (CSV)",
        result.to_csv(index=False).encode(),
        file_name="predictions.csv",
        mime="text/csv",
    )
