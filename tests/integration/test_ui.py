"""The Streamlit UI against a real inference API serving a real model."""

import contextlib
import functools
import http.server
import threading

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from covertype import schema
from covertype.serve.records import EXAMPLE
from covertype.ui import app as ui_app
from tests.support.browser import SCREENSHOTS, headless_chromium
from tests.support.environment import run_cli
from tests.support.servers import ServerProcess, free_port


@pytest.fixture(autouse=True)
def logins_off(monkeypatch):
    """The page's own tests run without the gate; the gate's tests below turn it on."""
    monkeypatch.setenv("COVERTYPE_AUTH", "off")


@pytest.fixture
def page(monkeypatch, inference_api, mlflow_server):
    """The app script, run in-process by Streamlit's AppTest, pointed at the real API."""
    monkeypatch.setenv("COVERTYPE_API_URL", inference_api.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    app = AppTest.from_file(ui_app.__file__, default_timeout=60)
    app.run()
    assert not app.exception, app.exception
    return app


def test_form_inputs_cannot_be_wrong(page):
    for field in schema.NUMERIC_FIELDS:
        number = page.number_input(key=field.name)
        assert (number.min, number.max) == (field.low, field.high)
        assert number.value == EXAMPLE[field.name]  # a real row
    assert page.selectbox(key="Wilderness_Area").options == list(schema.WILDERNESS_AREAS)
    soil = page.selectbox(key="Soil_Type")
    assert len(soil.options) == 40 and "UCI soil 29 · ELU C7745" in soil.options
    assert soil.value == "C7756"


def test_predicting_shows_the_class_name_number_and_model_version(page, champion):
    page.number_input(key="Elevation").set_value(2590)
    page.selectbox(key="Soil_Type").set_value("C7745")
    page.button[0].click().run()
    assert not page.exception and not page.error
    [answer] = page.success
    names = [n for n in schema.COVER_TYPE_NAMES if f"**{n}** — class " in answer.value]
    assert len(names) == 1
    number = schema.COVER_TYPE_NAMES.index(names[0])
    assert answer.value == (f"**{names[0]}** — class {number}, model version {champion['version']}")
    assert len(page.get("vega_lite_chart")) == 1  # the probabilities' bar chart
    [why] = [m.value for m in page.markdown if m.value.startswith("**Why ")]
    assert why.startswith(f"**Why {names[0]}** (SHAP, log-odds): ")
    assert len(why.split(" · ")) == 5 and "Elevation " in why


def test_a_csv_batch_predicts_valid_rows_and_reports_invalid_ones(page, real_frame, champion):
    rows = real_frame.iloc[100:105].copy()
    bad = real_frame.iloc[105:107].astype(object)
    bad.iloc[0, bad.columns.get_loc("Elevation")] = 99
    bad.iloc[1, bad.columns.get_loc("Soil_Type")] = "mud"
    csv = pd.concat([rows, bad]).to_csv(index=False).encode()  # Cover_Type is ignored
    page.tabs[1].file_uploader(key="batch").set_value(("records.csv", csv, "text/csv"))
    page.run()
    assert not page.exception and not page.error
    errors, predicted = (frame.value for frame in page.tabs[1].dataframe)
    assert predicted["row"].tolist() == [2, 3, 4, 5, 6]
    assert set(predicted["model_version"]) == {champion["version"]}
    assert predicted["cover_type"].between(0, 6).all()
    assert errors[["row", "field"]].values.tolist() == [[7, "Elevation"], [8, "Soil_Type"]]
    assert errors["reason"][0].startswith("Elevation: '99' is out of range; allowed:")
    assert page.get("download_button")  # the predictions as CSV


def test_a_csv_without_the_fields_says_which_are_missing(page):
    csv = b"Elevation,Aspect\n3000,10\n"
    page.tabs[1].file_uploader(key="batch").set_value(("x.csv", csv, "text/csv"))
    page.run()
    assert not page.exception
    [message] = page.error
    assert "lacks the column(s) Slope, Horizontal_Distance_To_Hydrology" in message.value


def test_the_model_card_shows_the_champion_its_metrics_and_confusion_matrix(
    page, champion, mlflow_server
):
    from mlflow import MlflowClient

    card = page.tabs[2]
    assert f"version {champion['version']} (alias champion)" in card.subheader[0].value
    values = {m.label: m.value for m in card.metric}
    # What the registry says of the version, as the card rounds it.
    client = MlflowClient(mlflow_server.url)
    tags = client.get_model_version(champion["model_name"], champion["version"]).tags
    assert values["Holdout accuracy"] == f"{float(tags['holdout_accuracy']):.4f}"
    assert values["Holdout macro F1"] == f"{float(tags['holdout_macro_f1']):.4f}"
    assert values["Trained on rows"] == tags["trained_rows"]
    [cost] = [c.value for c in card.caption if c.value.startswith("Serving cost:")]
    assert f"{float(tags['serving.single_row_us']):.0f} µs a single-row answer" in cost, cost
    [made] = [c.value for c in card.caption if c.value.startswith("Reproducible:")]
    assert f"data {tags['manifest.data_digest'][:12]}…" in made, made
    assert "Not reproduced yet: `covertype reproduce VERSION`" in made
    per_class = card.dataframe[0].value
    assert list(per_class.index) == list(schema.COVER_TYPE_NAMES)
    assert list(per_class.columns) == ["precision", "recall", "f1"]
    [image] = card.image
    assert image.captions == ["Holdout confusion matrix"]


def test_an_unreachable_api_is_a_message_not_a_traceback(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("COVERTYPE_API_URL", url)
    app = AppTest.from_file(ui_app.__file__, default_timeout=60)
    app.run()
    app.button[0].click().run()
    assert not app.exception
    messages = [e.value for e in app.error]
    assert messages[0].startswith(f"The inference API at {url} is not reachable")
    assert any(m.startswith(f"The inference API at {url}") for m in messages[1:])  # model card


def test_no_model_yet_is_said_plainly(monkeypatch, mlflow_server, tmp_path):
    server = ServerProcess(
        ["serve", "--port", str(free_port())],
        env={
            "COVERTYPE_HOME": str(tmp_path / "home"),
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "COVERTYPE_MODEL_NAME": "no-such-model",
        },
        cwd=tmp_path,
        log_path=tmp_path / "serve.log",
    ).start(ready_path="/health", timeout=120)
    try:
        monkeypatch.setenv("COVERTYPE_API_URL", server.url)
        app = AppTest.from_file(ui_app.__file__, default_timeout=60)
        app.run()
        app.button[0].click().run()
    finally:
        server.stop()
    assert not app.exception
    assert app.error[0].value.startswith("No model is served yet: ")


def sidebar_links(monkeypatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(ui_app.__file__, default_timeout=60)
    app.run()
    assert not app.exception
    return "\n".join(m.value for m in app.sidebar.markdown)


def test_links_are_built_from_the_settings_for_the_services_this_deployment_runs(monkeypatch):
    monkeypatch.setenv("COVERTYPE_LOCUST_URL", f"http://127.0.0.1:{free_port()}")  # none runs
    local = sidebar_links(
        monkeypatch,
        COVERTYPE_PUBLIC_HOST="forest.example",
        COVERTYPE_AIRFLOW_PORT="18080",
        COVERTYPE_API_URL="http://api.example:8085",
    )
    assert "[Airflow](http://forest.example:18080)" in local
    assert "[MLflow](http://forest.example:8084)" in local
    assert "[Inference API docs](http://forest.example:8085/docs)" in local
    assert "MinIO" not in local and "Locust" not in local and "Grafana" not in local
    compose = sidebar_links(monkeypatch, COVERTYPE_UI_LINKS="api,mlflow,airflow,minio,grafana")
    assert "[MinIO console](http://forest.example:8083)" in compose
    assert "[Grafana](http://forest.example:3000)" in compose


def test_the_locust_link_shows_while_a_locust_web_ui_answers(monkeypatch, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:  # any HTTP answer under 500 counts as up (Locust's is its login page)
        links = sidebar_links(
            monkeypatch, COVERTYPE_LOCUST_URL=f"http://127.0.0.1:{server.server_port}"
        )
    finally:
        server.shutdown()
        server.server_close()
    assert "[Locust (load test running)](http://127.0.0.1:8089)" in links


def test_screenshot_of_a_prediction_in_headless_chromium(inference_api, tmp_path, champion):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    app = ServerProcess(
        ["ui", "--port", str(port)],
        env={"COVERTYPE_HOME": str(tmp_path / "home"), "COVERTYPE_API_URL": inference_api.url},
        cwd=tmp_path,
        log_path=tmp_path / "ui.log",
    ).start(ready_path="/_stcore/health", timeout=120)
    try:
        with headless_chromium(tmp_path) as browser:
            browser.get(f"{app.url}/?predict=1&Elevation=2590&Soil_Type=29")
            expected = f"model version {champion['version']}"
            # The answer, and the form drawn around it: a bound, not a target (CI once took
            # over 60 s, the suite's other streams loading both cores).
            with contextlib.suppress(TimeoutException):
                WebDriverWait(browser, 120).until(
                    lambda b: (
                        expected in b.find_element(By.TAG_NAME, "body").text
                        and len(b.find_elements(By.CSS_SELECTOR, "input[type=number]")) == 10
                    )
                )
            SCREENSHOTS.mkdir(exist_ok=True)
            shot = SCREENSHOTS / "ui-prediction.png"
            browser.save_screenshot(str(shot))
            body = browser.find_element(By.TAG_NAME, "body").text
            numbers = len(browser.find_elements(By.CSS_SELECTOR, "input[type=number]"))
            assert expected in body and numbers == 10, (numbers, body, app.log())
            assert "Elevation [1000, 4500]" in body
    finally:
        app.stop()
    assert shot.stat().st_size > 20_000
    print(f"\nscreenshot: {shot}")


# ---------------------------------------------------------------- the password gate

UI_PASSWORD = "a-ui-password-for-tests"


def gated(monkeypatch, **env: str) -> AppTest:
    monkeypatch.setenv("COVERTYPE_AUTH", "on")
    monkeypatch.setenv("COVERTYPE_API_URL", f"http://127.0.0.1:{free_port()}")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(ui_app.__file__, default_timeout=60)
    app.run()
    assert not app.exception
    return app


def sign_in(app: AppTest, user: str, password: str) -> AppTest:
    app.text_input(key="sign_in_user").input(user)
    app.text_input(key="sign_in_password").input(password)
    return app.button[0].click().run()


def test_the_ui_shows_nothing_but_the_sign_in_form_until_the_password_is_given(monkeypatch):
    app = gated(monkeypatch, COVERTYPE_UI_PASSWORD=UI_PASSWORD)
    assert [s.value for s in app.subheader] == ["Sign in"]
    assert not app.tabs and not app.sidebar.markdown  # no tab, no link, no API URL
    for user, password in (("covertype", "wrong-password-12"), ("someone", UI_PASSWORD)):
        sign_in(app, user, password)
        assert not app.exception
        assert [e.value for e in app.error] == ["Wrong user name or password."]
        assert not app.tabs
    sign_in(app, "covertype", UI_PASSWORD)
    assert not app.exception
    assert "Wrong user name or password." not in [e.value for e in app.error]
    assert len(app.tabs) == 4
    assert any("Inference API docs" in m.value for m in app.sidebar.markdown)
    app.sidebar.button[0].click().run()  # sign out
    assert not app.tabs and [s.value for s in app.subheader] == ["Sign in"]


def test_the_gate_takes_its_user_from_the_settings(monkeypatch):
    app = gated(monkeypatch, COVERTYPE_UI_PASSWORD=UI_PASSWORD, COVERTYPE_UI_USER="forester")
    sign_in(app, "covertype", UI_PASSWORD)
    assert not app.tabs
    sign_in(app, "forester", UI_PASSWORD)
    assert len(app.tabs) == 4


def test_without_a_password_the_ui_says_which_variable_opens_it(monkeypatch, tmp_path):
    monkeypatch.delenv("COVERTYPE_UI_PASSWORD", raising=False)
    app = gated(monkeypatch)
    assert app.error[0].value.startswith("COVERTYPE_UI_PASSWORD is not set")
    assert not app.tabs and not app.text_input
    # ... and `covertype ui` refuses to start, saying the same; an empty or short one too.
    for value, message in (
        (None, "COVERTYPE_UI_PASSWORD is not set: with COVERTYPE_AUTH=on the UI opens only"),
        ("", "COVERTYPE_UI_PASSWORD=<hidden>: a password is empty"),
        ("short", "COVERTYPE_UI_PASSWORD=<hidden>: a password is too short (5 characters)"),
    ):
        env = {"COVERTYPE_AUTH": "on", "COVERTYPE_HOME": str(tmp_path / "home")}
        if value is not None:
            env["COVERTYPE_UI_PASSWORD"] = value
        done = run_cli(["ui", "--port", str(free_port())], env, cwd=tmp_path, timeout=60)
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
