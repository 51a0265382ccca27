"""The Monitoring tab's charts (Altair, drawn by Streamlit), from `monitoring_data`'s frames:
one function per chart, each given only what it draws."""

from __future__ import annotations

import functools

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


# The moves on the timeline: a shape per action, rollbacks in red.
MOVE_SHAPES = alt.Scale(
    domain=["promote", "challenge", "retire", "rollback", "automatic_rollback"],
    range=["triangle-up", "circle", "cross", "triangle-down", "diamond"],
)
MOVE_LEGEND = (
    "▲ promote · ● challenge · ✚ retire · ▼ rollback · ◆ automatic rollback (red: rollbacks)"
)
WHEN = "%Y-%m-%d %H:%M:%S"


def release_charts(
    periods: pd.DataFrame, moves: pd.DataFrame, accuracy: pd.DataFrame
) -> tuple[alt.LayerChart, alt.LayerChart]:
    """The release timeline (`alias_periods`, each move a mark with its reason in the
    tooltip) and, to draw below it, the live accuracy of each version on the batches it
    served. Two charts, each as wide as the page (a concatenation cannot be), lined up: the
    same time scale, y axes of one width, no legend, one colour a version in both."""
    versions = sorted({*periods["version"], *accuracy["version"]}, key=_version_order)
    # No legends: they would make the plots' widths differ (the bars and the points say
    # their version; MOVE_LEGEND, a caption, the shapes).
    color = alt.Color(
        "version:N",
        scale=alt.Scale(domain=versions, scheme="category10"),  # rollbacks' red comes 4th
        legend=None,
    )
    times = pd.concat([periods["start"], periods["end"], moves["moved_at"], accuracy["created_at"]])
    pad = (times.max() - times.min()) * 0.02 + pd.Timedelta(seconds=30)
    domain = [_datetime(t) for t in (times.min() - pad, times.max() + pad)]
    x = functools.partial(
        alt.X, title=None, scale=alt.Scale(domain=domain), axis=alt.Axis(format="%H:%M")
    )
    return _timeline(periods, moves, color, x), _serving_accuracy(accuracy, color, x)


def _timeline(periods: pd.DataFrame, moves: pd.DataFrame, color, x) -> alt.LayerChart:
    alias_order = list(dict.fromkeys(moves["alias"]))  # the serving alias's first move is first
    y = alt.Y("alias:N", title=None, sort=alias_order, axis=_Y_AXIS)
    bars = (
        alt.Chart(periods)
        .transform_calculate(label="'v' + datum.version")
        .mark_bar(height=18, opacity=0.85)
        .encode(
            x=x("start:T"), x2="end:T", y=y, color=color,
            tooltip=["alias", alt.Tooltip("label:N", title="version"),
                     alt.Tooltip("start:T", format=WHEN), alt.Tooltip("end:T", format=WHEN),
                     "current"],
        )
    )  # fmt: skip
    labels = bars.mark_text(align="left", dx=10, fontWeight="bold").encode(
        text="label:N", color=alt.value("white")
    )
    rolled_back = alt.FieldOneOfPredicate(field="action", oneOf=["rollback", "automatic_rollback"])
    marks = (
        alt.Chart(moves)
        .mark_point(size=170, filled=True, opacity=1, stroke="white", strokeWidth=1)
        .encode(
            x=x("moved_at:T"), y=y,
            shape=alt.Shape("action:N", scale=MOVE_SHAPES, legend=None),
            color=alt.condition(rolled_back, alt.value("#d62728"), alt.value("black")),
            tooltip=[alt.Tooltip("moved_at:T", title="when", format=WHEN), "alias", "action",
                     "change", "actor", "reason"],
        )
    )  # fmt: skip
    # A band a row: Streamlit draws a layer chart at its own height, not at a number's.
    chart = alt.layer(
        bars, labels, marks, title="Releases: which version each alias held, and the moves"
    ).properties(height=alt.Step(32))
    assert isinstance(chart, alt.LayerChart)  # no facet encoding to hoist into a FacetChart
    return chart


def _serving_accuracy(accuracy: pd.DataFrame, color, x) -> alt.LayerChart:
    labelled = accuracy.assign(
        label="v"
        + accuracy["version"].astype(str)
        + " · batch "
        + accuracy["batch_number"].astype(str)
    )
    base = alt.Chart(labelled)
    base = base.encode(
        x=x("created_at:T"),
        y=alt.Y("live_accuracy:Q", title=None, scale=alt.Scale(zero=False), axis=_Y_AXIS),
        color=color,
        detail="stint:N",  # no line across the time another version served
        tooltip=["version", "batch_number", alt.Tooltip("live_accuracy:Q", format=".3f"),
                 alt.Tooltip("live_macro_f1:Q", format=".3f"),
                 alt.Tooltip("created_at:T", title="scored", format=WHEN)],
    )  # fmt: skip
    lines = base.mark_line(point=alt.OverlayMarkDef(size=60))
    labels = base.mark_text(dy=-10, fontSize=10).encode(text="label:N")
    chart = alt.layer(
        lines, labels, title="Live accuracy of the serving version on each batch as it arrived"
    )
    assert isinstance(chart, alt.LayerChart)
    return chart


# Both charts' plots start at the same x (no axis title: it would add its own width).
_Y_AXIS = alt.Axis(minExtent=90, maxExtent=90)


def _datetime(moment: pd.Timestamp) -> alt.DateTime:
    """A scale's bound (Vega-Lite takes no pandas timestamp; Streamlit garbles epoch ms)."""
    t = moment.tz_convert("UTC")
    return alt.DateTime(year=t.year, month=t.month, date=t.day, hours=t.hour,
                        minutes=t.minute, seconds=t.second, utc=True)  # fmt: skip


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)
