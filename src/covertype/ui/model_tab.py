"""The Model card tab: the served version, its holdout scores and training data (from the
API), its per-class metrics and confusion matrix (from MLflow)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from covertype import schema
from covertype.settings import Settings
from covertype.ui.api_client import ApiError, call


def model_tab(settings: Settings) -> None:
    try:
        model = call(settings, "GET", "/model")
    except ApiError as error:
        st.error(str(error))
        return
    assert isinstance(model, dict)  # GET /model answers a ModelInfo object
    metrics = model.get("metrics") or {}
    st.subheader(f"{model['name']} version {model['version']} (alias {model['alias']})")
    left, middle, right = st.columns(3)
    left.metric("Holdout accuracy", _fmt(metrics.get("holdout_accuracy")))
    middle.metric("Holdout macro F1", _fmt(metrics.get("holdout_macro_f1")))
    right.metric("Trained on rows", model.get("trained_rows") or "–")
    st.write(
        f"Family **{model.get('family') or '–'}**, trained {model.get('trained_at') or '–'} on "
        f"batches {model.get('trained_batches') or '–'}; run `{model['run_id']}`."
    )
    if model.get("gate_decision"):
        st.caption(f"Gate: {model['gate_decision']}")
    st.caption(serving_cost_line(model.get("serving_cost")))
    st.caption(reproducibility_line(model.get("reproducibility")))
    per_class, image = mlflow_details(settings, model["run_id"])
    if per_class is None:
        st.info(f"Per-class metrics and the confusion matrix come from MLflow: {image}")
        return
    st.dataframe(per_class)
    st.image(image, caption="Holdout confusion matrix")


def mlflow_details(settings: Settings, run_id: str):
    """(per-class table, confusion matrix PNG bytes) from the run, or (None, why not)."""
    import os

    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        client = MlflowClient(settings.mlflow.tracking_uri)
        run_metrics = client.get_run(run_id).data.metrics
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "confusion_matrix.png", tmp)
            image = Path(path).read_bytes()
    except Exception as error:  # any failure of the registry is a message in the page
        return None, f"{settings.mlflow.tracking_uri} did not answer ({type(error).__name__})."
    table = pd.DataFrame(
        {
            what: [run_metrics.get(f"holdout_{what}_class_{k}") for k in range(7)]
            for what in ("precision", "recall", "f1")
        },
        index=list(schema.COVER_TYPE_NAMES),
    )
    return table.round(4), image


def serving_cost_line(cost: dict | None) -> str:
    """What one answer cost when the version was trained, against the API's budget."""
    if not cost:
        return "Serving cost: not measured (trained before costs were)."
    budget = cost["budget_us"]
    verdict = (
        "no budget"
        if not budget
        else f"{'within' if cost['within_budget'] else '**over**'} the budget of {budget:g} µs"
    )
    return (
        f"Serving cost: {cost['single_row_us']:.0f} µs a single-row answer (p90 "
        f"{cost['single_row_p90_us']:.0f} µs), {cost['batch_row_us']:.1f} µs a row in a batch, "
        f"measured at training; {verdict}."
    )


def reproducibility_line(facts: dict | None) -> str:
    """The manifest's summary and the last `covertype reproduce`, in one line."""
    if not facts:
        return "Reproducible: no (trained before manifests; its data cannot be rebuilt)."
    size = facts.get("snapshot_bytes")
    made = (
        f"Reproducible: data {facts['data_digest'][:12]}… ("
        + (f"snapshot {size / 1e6:.1f} MB" if size else "snapshot")
        + f"), commit {(facts.get('commit') or 'unknown')[:10]}, "
        f"covertype {facts.get('package_version') or '?'}."
    )
    if not facts.get("last_result"):
        return f"{made} Not reproduced yet: `covertype reproduce VERSION`."
    return (
        f"{made} Last reproduced {facts['last_reproduced_at']} from "
        f"{facts['last_reproduced_from']}: **{facts['last_result']}** "
        f"({facts.get('last_summary') or ''})."
    )


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "–"
