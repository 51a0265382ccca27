"""The Monitoring tab: batches, drift, champions, live accuracy, releases and traffic, each
from its own source (`monitoring_data`); a source that does not answer is a message, the
rest is drawn (`monitoring_charts`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from covertype.settings import Settings
from covertype.ui import monitoring_charts as charts
from covertype.ui import monitoring_data as data


def monitoring_tab(settings: Settings) -> None:
    """The data, the models and the traffic, each from its own source: a source that does
    not answer is a message, the rest is drawn."""
    left, right = st.columns(2)
    batches = _show(left, data.batches, settings)
    drift = _show(right, data.batch_drift, settings)
    if batches is not None:
        if batches.empty:
            left.info("No batch collected yet: the collection DAG stores one per window.")
        else:
            left.altair_chart(charts.rows_per_batch_chart(batches), width="stretch")
    if drift is not None:
        if drift.empty:
            right.info("No drift report yet: each collected batch gets one once a champion exists.")
        else:
            right.altair_chart(charts.drift_share_chart(drift), width="stretch")

    left, right = st.columns(2)
    history = _show(left, data.champion_history, settings)
    if history is not None:
        if history.empty:
            left.info("No model registered yet: the first training registers one.")
        else:
            if not history["champion"].any():
                left.warning(f"No version is under the alias {settings.mlflow.model_alias!r} yet.")
            left.altair_chart(charts.champion_history_chart(history), width="stretch")
            recent = history.sort_values("version", ascending=False).head(5)
            left.caption(
                "Latest: "
                + "; ".join(f"v{r.version} {r.family}: {r.decision}" for r in recent.itertuples())
            )
    if drift is not None and drift["live_accuracy"].notna().any():
        accuracy = data.accuracy_before_after(drift, history)
        right.altair_chart(charts.accuracy_chart(accuracy), width="stretch")
    elif drift is not None:
        right.info("No live accuracy yet: it is measured on each batch once a champion exists.")

    releases(settings)

    traffic = _show(st, data.traffic, settings)
    if traffic is not None:
        if traffic.empty:
            st.info("No prediction reached the inference API in the last 15 minutes.")
        else:
            columns = st.columns(len(data.TRAFFIC_QUERIES))
            for column, measure in zip(columns, data.TRAFFIC_QUERIES, strict=True):
                column.altair_chart(charts.traffic_chart(traffic, measure), width="stretch")


LEDGER_ROWS = 20


def releases(settings: Settings) -> None:
    """The release ledger as a timeline of the aliases, with the live accuracy of each version
    that served, and its newest moves as a table."""
    moves = _show(st, data.release_moves, settings)
    if moves is None:
        return
    if moves.empty:
        st.info(
            "No release move yet: the ledger records each promotion, challenger, retirement "
            "and rollback (`covertype releases` prints it)."
        )
        return
    accuracy = _show(st, data.serving_accuracy, settings)
    periods = data.alias_periods(moves, pd.Timestamp.now(tz="UTC"))
    timeline, served = charts.release_charts(periods, moves, _or_empty(accuracy))
    st.altair_chart(timeline, width="stretch")
    st.caption(charts.MOVE_LEGEND)
    if accuracy is not None and not accuracy.empty:  # None: the warning above says why
        st.altair_chart(served, width="stretch", height=240)
    shown = min(len(moves), LEDGER_ROWS)
    st.caption(
        f"Release ledger of {settings.mlflow.model_name}: {len(moves)} moves, the newest "
        f"{shown} below (`covertype releases` prints every move with its scores)."
    )
    st.dataframe(data.ledger_table(moves, LEDGER_ROWS), hide_index=True, width="stretch")


def _or_empty(accuracy: pd.DataFrame | None) -> pd.DataFrame:
    return pd.DataFrame(columns=[*data.SERVING_COLUMNS, "stint"]) if accuracy is None else accuracy


def _show(where, read, settings: Settings):
    """read(settings), or None after saying in the page why it could not be read."""
    key = (settings.data_db, settings.mlflow.tracking_uri, settings.prometheus.url,
           settings.mlflow.model_name, settings.mlflow.model_alias)  # fmt: skip
    result, problem = _read(read.__name__, key, settings)
    if problem is not None:
        where.warning(problem)
    return result


# Every rerun draws every tab: without a cache a click in Predict would ask the data DB,
# MLflow and Prometheus again. A failure is kept as long, so a hanging source costs once.
# `key` (the settings the readers use) is what the cache hashes; `_settings` is not hashed.
@st.cache_data(ttl=15, show_spinner=False)
def _read(name: str, key: tuple, _settings: Settings):
    try:
        return getattr(data, name)(_settings), None
    except data.SourceUnavailable as error:
        return None, str(error)
