"""Streamlit front end of the platform: one prediction, a CSV batch, the model card, and
the Monitoring tab (batches, drift, champions, live accuracy, traffic; covertype.monitor).

Run with `covertype ui` (port COVERTYPE_UI_PORT). Every value the form can send is valid by
construction (bounded numbers, the canonical vocabularies); a CSV batch is checked row by row
with the schema module, invalid rows are reported and the valid ones still predicted.
Query parameters prefill the form (`?Elevation=3000&Soil_Type=C7745`) and `predict=1`
predicts at once, so a prediction can be shared as a link.
"""

from __future__ import annotations

import hmac
import io
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
import streamlit as st

from covertype import http_errors, schema
from covertype.monitor import charts, overview
from covertype.serve.records import EXAMPLE
from covertype.settings import Settings, client_host

LABELS = {
    "Horizontal_Distance_To_Hydrology": "Horizontal distance to water (m)",
    "Vertical_Distance_To_Hydrology": "Vertical distance to water (m)",
    "Horizontal_Distance_To_Roadways": "Distance to roadways (m)",
    "Horizontal_Distance_To_Fire_Points": "Distance to fire points (m)",
}


class ApiError(Exception):
    """The API could not answer; the message is for the page."""


def soil_label(code: str) -> str:
    number = schema.SOIL_TYPES.index(code) + 1
    return f"UCI soil {number} · ELU {code}"


def links(settings: Settings, locust_running: bool = False) -> dict[str, str]:
    """The services this deployment runs (settings.ui_links), as a browser reaches them;
    Locust only while its web UI answers. No link leads nowhere."""
    host = settings.public_host

    def at(port: int, path: str = "") -> str:
        return f"http://{host}:{port}{path}"

    # The API's own URL may be a service name (compose, k8s) a browser cannot reach.
    known = {
        "api": ("Inference API docs", at(settings.serve_port, "/docs")),
        "mlflow": ("MLflow", at(settings.mlflow_port)),
        "airflow": ("Airflow", at(settings.airflow_port)),
        "minio": ("MinIO console", at(settings.minio_console_port)),
        "prometheus": ("Prometheus", at(settings.prometheus_port, "/alerts")),
        "grafana": ("Grafana", at(settings.grafana_port)),
    }
    wanted = [name.strip() for name in settings.ui_links.split(",") if name.strip()]
    shown = dict(known[name] for name in wanted if name in known)
    if locust_running:
        shown["Locust (load test running)"] = at(settings.locust_port)
    return shown


def locust_running(settings: Settings) -> bool:
    """Whether a Locust web UI answers where the settings say (its login page)."""
    url = (
        settings.locust_url or f"http://{client_host(settings.locust_host)}:{settings.locust_port}"
    )
    return _answers(url)


@st.cache_data(ttl=10, show_spinner=False)  # asked once per 10 s, not on every rerun
def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code < 500
    except httpx.HTTPError:
        return False


def call(settings: Settings, method: str, path: str, **kwargs) -> object:
    """The API's JSON answer, or ApiError with what went wrong in words."""
    url = f"{settings.api_url}{path}"
    try:
        response = httpx.request(method, url, timeout=30, headers=settings.api_headers, **kwargs)
    except httpx.HTTPError as error:
        raise ApiError(
            f"The inference API at {settings.api_url} is not reachable ({error})."
        ) from None
    if response.status_code == 503:
        raise ApiError(f"No model is served yet: {http_errors.detail(response)}")
    if response.status_code == 401:
        raise ApiError(
            f"The inference API refused the UI's key (COVERTYPE_API_KEY): "
            f"{http_errors.detail(response)}"
        )
    if response.status_code == 422:
        problems = response.json().get("detail", [])
        raise ApiError("Invalid input: " + "; ".join(p.get("msg", str(p)) for p in problems))
    if response.status_code != 200:
        raise ApiError(
            f"The inference API answered {response.status_code}: {http_errors.detail(response)}"
        )
    return response.json()


# ---------------------------------------------------------------- batch


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
    for start in range(0, len(records), settings.serve_max_batch):
        chunk = records[start : start + settings.serve_max_batch]
        answers += call(settings, "POST", "/predict/batch", json=chunk)
    result = valid.copy()
    result["cover_type"] = [a["cover_type"] for a in answers]
    result["cover_type_name"] = [a["cover_type_name"] for a in answers]
    result["model_version"] = [a["model_version"] for a in answers]
    return result


# ---------------------------------------------------------------- page


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
            st.markdown(
                f"**Why {why['explained_class']}** (SHAP, log-odds): "
                + " · ".join(c["text"] for c in why["contributions"])
            )
        except ApiError as error:  # e.g. 501: the family has no explanations
            st.caption(str(error))


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


def model_tab(settings: Settings) -> None:
    try:
        model = call(settings, "GET", "/model")
    except ApiError as error:
        st.error(str(error))
        return
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
        client = MlflowClient(settings.mlflow_tracking_uri)
        run_metrics = client.get_run(run_id).data.metrics
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "confusion_matrix.png", tmp)
            image = Path(path).read_bytes()
    except Exception as error:  # any failure of the registry is a message in the page
        return None, f"{settings.mlflow_tracking_uri} did not answer ({type(error).__name__})."
    table = pd.DataFrame(
        {
            what: [run_metrics.get(f"holdout_{what}_class_{k}") for k in range(7)]
            for what in ("precision", "recall", "f1")
        },
        index=list(schema.COVER_TYPE_NAMES),
    )
    return table.round(4), image


def monitoring_tab(settings: Settings) -> None:
    """The data, the models and the traffic, each from its own source: a source that does
    not answer is a message, the rest is drawn."""
    left, right = st.columns(2)
    batches = _show(left, overview.batches, settings)
    drift = _show(right, overview.batch_drift, settings)
    if batches is not None:
        if batches.empty:
            left.info("No batch collected yet: the collection DAG stores one per window.")
        else:
            left.altair_chart(charts.rows_per_batch(batches), width="stretch")
    if drift is not None:
        if drift.empty:
            right.info("No drift report yet: each collected batch gets one once a champion exists.")
        else:
            right.altair_chart(charts.drift_share(drift), width="stretch")

    left, right = st.columns(2)
    history = _show(left, overview.champion_history, settings)
    if history is not None:
        if history.empty:
            left.info("No model registered yet: the first training registers one.")
        else:
            if not history["champion"].any():
                left.warning(f"No version is under the alias {settings.model_alias!r} yet.")
            left.altair_chart(charts.champion_history(history), width="stretch")
            recent = history.sort_values("version", ascending=False).head(5)
            left.caption(
                "Latest: "
                + "; ".join(f"v{r.version} {r.family}: {r.decision}" for r in recent.itertuples())
            )
    if drift is not None and drift["live_accuracy"].notna().any():
        accuracy = overview.accuracy_before_after(drift, history)
        right.altair_chart(charts.accuracy_before_after(accuracy), width="stretch")
    elif drift is not None:
        right.info("No live accuracy yet: it is measured on each batch once a champion exists.")

    traffic = _show(st, overview.traffic, settings)
    if traffic is not None:
        if traffic.empty:
            st.info("No prediction reached the inference API in the last 15 minutes.")
        else:
            columns = st.columns(len(overview.TRAFFIC_QUERIES))
            for column, measure in zip(columns, overview.TRAFFIC_QUERIES, strict=True):
                column.altair_chart(charts.traffic(traffic, measure), width="stretch")


def _show(where, read, settings: Settings):
    """read(settings), or None after saying in the page why it could not be read."""
    key = (settings.data_db, settings.mlflow_tracking_uri, settings.prometheus_url,
           settings.model_name, settings.model_alias)  # fmt: skip
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
        return getattr(overview, name)(_settings), None
    except overview.Unavailable as error:
        return None, str(error)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "–"


def signed_in(settings: Settings) -> bool:
    """The password gate (COVERTYPE_UI_USER / COVERTYPE_UI_PASSWORD): True once this
    browser session has signed in, else the form is drawn. A reload is a new session."""
    if settings.auth != "on" or st.session_state.get("signed_in"):
        return True
    if settings.ui_password is None:
        st.error(
            "COVERTYPE_UI_PASSWORD is not set: with COVERTYPE_AUTH=on this UI opens only with "
            "a password (12 characters or more)."
        )
        return False
    with st.form("sign-in"):
        st.subheader("Sign in")
        user = st.text_input("User", key="sign_in_user")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        # Both compared in constant time, and both always: the timing tells nothing.
        good_user = hmac.compare_digest(user.encode(), settings.ui_user.encode())
        secret = settings.ui_password.get_secret_value().encode()
        if hmac.compare_digest(password.encode(), secret) & good_user:
            st.session_state["signed_in"] = True
            st.rerun()
        time.sleep(1)  # each wrong guess costs a second
        st.error("Wrong user name or password.")
    return False


def main() -> None:
    settings = Settings()
    st.set_page_config(page_title="covertype", page_icon="🌲", layout="wide")
    st.title("Forest cover type")
    if not signed_in(settings):
        st.stop()
    with st.sidebar:
        st.header("Services")
        for name, url in links(settings, locust_running(settings)).items():
            st.markdown(f"- [{name}]({url})")
        st.caption(f"Inference API: {settings.api_url}")
        if settings.auth == "on" and st.button("Sign out"):
            st.session_state.clear()
            st.rerun()
    predict, batch, card, monitoring = st.tabs(
        ["Predict", "Batch (CSV)", "Model card", "Monitoring"]
    )
    with predict:
        predict_tab(settings)
    with batch:
        batch_tab(settings)
    with card:
        model_tab(settings)
    with monitoring:
        monitoring_tab(settings)


if __name__ == "__main__":  # how `streamlit run` executes the file
    main()
