"""The Monitoring tab's charts (Altair, drawn by Streamlit), from `monitoring_data`'s frames:
one function per chart, each given only what it draws."""

from __future__ import annotations

import altair as alt
import pandas as pd

DRIFTED = alt.Scale(domain=["drifted", "not drifted"], range=["#d62728", "#7f9fbf"])


def rows_per_batch_chart(frame: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(frame, title="Rows collected per batch")
        .mark_bar(color="#4c78a8")
        .encode(
            x=alt.X("batch_number:O", title="batch"),
            y=alt.Y("rows:Q", title="rows in the data DB"),
            tooltip=["batch_number", "rows"],
        )
    )


def drift_share_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Share of drifted features per batch, red where the report found the batch drifted,
    with the report's threshold as a line. Each bar is labelled with its drifted features
    ("0/12"): a batch whose report found no drift would otherwise look like one without a
    report."""
    data = frame.assign(
        status=frame["dataset_drift"].map({True: "drifted", False: "not drifted"}),
        threshold=frame["drift_share_threshold"],
        label=frame["drifted_features"].astype(str) + "/" + frame["features"].astype(str),
    )
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("batch_number:O", title="batch"),
            y=alt.Y(
                "drift_share:Q", title="share of drifted features", scale=alt.Scale(domain=[0, 1])
            ),
            color=alt.Color("status:N", scale=DRIFTED, title=None),
            tooltip=[
                "batch_number",
                "drift_share",
                "drifted_features",
                "features",
                "champion_version",
            ],
        )
    )
    # Black text, not the bars' status colours it would inherit.
    labels = bars.mark_text(baseline="bottom", dy=-3).encode(
        text="label:N", color=alt.value("black")
    )
    line = (
        alt.Chart(data)
        .mark_rule(color="black", strokeDash=[6, 3])
        .encode(
            y="mean(threshold):Q", tooltip=[alt.Tooltip("mean(threshold):Q", title="threshold")]
        )
    )
    chart = alt.layer(bars, labels, line, title="Drift share per batch (dashed: drift threshold)")
    assert isinstance(chart, alt.LayerChart)  # no facet encoding to hoist into a FacetChart
    return chart


def champion_history_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Each registered version's holdout macro F1, filled where the gate promoted it, the
    current champion ringed."""
    data = frame.assign(
        gate=frame["promoted"].map({True: "promoted", False: "kept the champion"}),
        now=frame["champion"].map({True: "champion now", False: ""}),
    )
    base = alt.Chart(data).encode(
        x=alt.X("version:O", title="registered version"),
        y=alt.Y("holdout_macro_f1:Q", title="holdout macro F1", scale=alt.Scale(zero=False)),
        tooltip=[
            "version",
            "family",
            "holdout_macro_f1",
            "holdout_accuracy",
            "registered_at",
            "decision",
        ],
    )
    points = base.mark_point(size=140, filled=True).encode(
        color=alt.Color(
            "gate:N",
            title="gate",
            scale=alt.Scale(domain=["promoted", "kept the champion"], range=["#2ca02c", "#bbbbbb"]),
        ),
        shape=alt.Shape("family:N", title="family"),
    )
    ring = base.transform_filter(alt.datum.champion).mark_point(
        size=420, color="black", strokeWidth=2
    )
    labels = base.mark_text(dy=-16).encode(text="now:N")
    chart = alt.layer(points, ring, labels, title="Champion history: holdout macro F1 per version")
    assert isinstance(chart, alt.LayerChart)  # no facet encoding to hoist into a FacetChart
    return chart


def accuracy_chart(frame: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(
            frame,
            title="Accuracy per batch, before and after retraining",
        )
        .mark_bar()
        .encode(
            x=alt.X("batch_number:O", title="batch"),
            xOffset=alt.XOffset("when:N", sort=["before", "after retraining"]),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "when:N",
                sort=["before", "after retraining"],
                scale=alt.Scale(range=["#ff7f0e", "#2ca02c"]),
                title=None,
            ),
            tooltip=["batch_number", "when", alt.Tooltip("accuracy:Q", format=".3f")],
        )
    )


def traffic_chart(frame: pd.DataFrame, measure: str) -> alt.Chart:
    data = frame[frame["measure"] == measure]
    return (
        alt.Chart(data, title=f"{measure}, last 15 minutes")
        .mark_line(point=False)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("value:Q", title=measure),
            color=alt.Color("endpoint:N", title="endpoint"),
            tooltip=["time:T", "endpoint", alt.Tooltip("value:Q", format=".2f")],
        )
    )
