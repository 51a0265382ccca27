"""The Streamlit UI against a real inference API serving a real model."""

import shutil

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from covertype import schema, ui
from covertype.serve.records import EXAMPLE
from covertype.testing import SCREENSHOTS, ServerProcess, free_port

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--window-size=1400,1100",
]  # fmt: skip


@pytest.fixture
def page(monkeypatch, inference_api, mlflow_server):
    """The app script, run in-process by Streamlit's AppTest, pointed at the real API."""
    monkeypatch.setenv("COVERTYPE_API_URL", inference_api.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    app = AppTest.from_file(ui.__file__, default_timeout=60)
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


def test_the_model_card_shows_the_champion_its_metrics_and_confusion_matrix(page, champion):
    card = page.tabs[2]
    assert f"version {champion['version']} (alias champion)" in card.subheader[0].value
    values = {m.label: m.value for m in card.metric}
    assert 0.3 < float(values["Holdout accuracy"]) <= 1
    assert 0 < float(values["Holdout macro F1"]) <= 1
    assert int(values["Trained on rows"]) > 1000
    per_class = card.dataframe[0].value
    assert list(per_class.index) == list(schema.COVER_TYPE_NAMES)
    assert list(per_class.columns) == ["precision", "recall", "f1"]
    [image] = card.image
    assert image.captions == ["Holdout confusion matrix"]


def test_an_unreachable_api_is_a_message_not_a_traceback(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("COVERTYPE_API_URL", url)
    app = AppTest.from_file(ui.__file__, default_timeout=60)
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
        app = AppTest.from_file(ui.__file__, default_timeout=60)
        app.run()
        app.button[0].click().run()
    finally:
        server.stop()
    assert not app.exception
    assert app.error[0].value.startswith("No model is served yet: ")


def test_links_are_built_from_the_settings(monkeypatch):
    monkeypatch.setenv("COVERTYPE_PUBLIC_HOST", "forest.example")
    monkeypatch.setenv("COVERTYPE_AIRFLOW_PORT", "18080")
    monkeypatch.setenv("COVERTYPE_API_URL", "http://api.example:8085")
    app = AppTest.from_file(ui.__file__, default_timeout=60)
    app.run()
    sidebar = "\n".join(m.value for m in app.sidebar.markdown)
    assert "[Airflow](http://forest.example:18080)" in sidebar
    assert "[MLflow](http://forest.example:8084)" in sidebar
    assert "[MinIO console](http://forest.example:8083)" in sidebar
    assert "[Locust](http://forest.example:8089)" in sidebar
    assert "[Inference API docs](http://forest.example:8085/docs)" in sidebar


def test_screenshot_of_a_prediction_in_headless_chromium(inference_api, tmp_path, champion):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "Debian packages chromium and chromium-driver (.ci/run)"
    port = free_port()
    app = ServerProcess(
        ["ui", "--port", str(port)],
        env={"COVERTYPE_HOME": str(tmp_path / "home"), "COVERTYPE_API_URL": inference_api.url},
        cwd=tmp_path,
        log_path=tmp_path / "ui.log",
    ).start(ready_path="/_stcore/health", timeout=120)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(f"{app.url}/?predict=1&Elevation=2590&Soil_Type=29")
        expected = f"model version {champion['version']}"
        WebDriverWait(browser, 60).until(  # the answer, and the form drawn around it
            lambda b: (
                expected in b.find_element(By.TAG_NAME, "body").text
                and len(b.find_elements(By.CSS_SELECTOR, "input[type=number]")) == 10
            )
        )
        assert "Elevation [1000, 4500]" in browser.find_element(By.TAG_NAME, "body").text
        SCREENSHOTS.mkdir(exist_ok=True)
        shot = SCREENSHOTS / "ui-prediction.png"
        browser.save_screenshot(str(shot))
    finally:
        browser.quit()
        app.stop()
    assert shot.stat().st_size > 20_000
    print(f"\nscreenshot: {shot}")
