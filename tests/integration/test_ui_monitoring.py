"""The Streamlit UI's Monitoring tab against real servers: what it says when a source is
missing, the champion history from a real MLflow, and the release timeline and ledger from
a data DB written through the release ledger, in AppTest and in headless Chromium."""

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from covertype import db
from covertype.release import ledger
from covertype.settings import Settings
from covertype.ui import app as ui_app
from tests.support.browser import SCREENSHOTS, headless_chromium
from tests.support.servers import ServerProcess, free_port


@pytest.fixture(autouse=True)
def logins_off(monkeypatch):
    monkeypatch.setenv("COVERTYPE_AUTH", "off")


def test_the_monitoring_tab_says_what_is_missing_without_a_champion_or_mlflow(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("COVERTYPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("COVERTYPE_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("COVERTYPE_PROMETHEUS_URL", raising=False)
    app = AppTest.from_file(ui_app.__file__, default_timeout=60)
    app.run()
    assert not app.exception
    tab = app.tabs[3]
    warnings = [w.value for w in tab.warning]
    assert any(
        w.startswith("The champion history comes from MLflow at http://127.0.0.1:")
        for w in warnings
    )
    assert any("COVERTYPE_PROMETHEUS_URL is unset" in w for w in warnings)
    infos = [i.value for i in tab.info]
    assert any(i.startswith("No batch collected yet") for i in infos)
    assert any(i.startswith("No drift report yet") for i in infos)
    assert any(i.startswith("No release move yet: the ledger records") for i in infos)


def monitoring_tab(monkeypatch, home, mlflow_url: str, champion: dict):
    """The UI run once against this home and MLflow; its Monitoring tab."""
    monkeypatch.setenv("COVERTYPE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
    monkeypatch.setenv("COVERTYPE_MODEL_NAME", champion["model_name"])
    app = AppTest.from_file(ui_app.__file__, default_timeout=60)
    app.run()
    assert not app.exception
    return app.tabs[3]


def test_the_monitoring_tab_draws_the_champion_history_from_mlflow(
    monkeypatch, tmp_path, mlflow_server, champion
):
    tab = monitoring_tab(monkeypatch, tmp_path / "home", mlflow_server.url, champion)
    assert not [w.value for w in tab.warning if "MLflow" in w.value]
    assert tab.get("vega_lite_chart")  # the champion history
    assert any(f"v{champion['version']} lightgbm" in c.value for c in tab.caption)


ROLLBACK_REASON = "F1 0.61 on batch 4, below v1's 0.80 by more than 0.02"
# Minutes into the last hour: alias, action, from, to, actor, reason.
RELEASE_STORY = [
    (0, "champion", ledger.PROMOTE, None, "1", "gate", "first champion"),
    (10, "challenger", ledger.CHALLENGE, None, "2", "gate", "passed the gate"),
    (22, "champion", ledger.PROMOTE, "1", "2", "review", "F1 0.83 ≥ 0.81 − 0.005 on batch 2"),
    (30, "challenger", ledger.CHALLENGE, None, "3", "gate", "passed the gate"),
    (40, "challenger", ledger.RETIRE, "3", None, "review", "F1 0.70 < 0.83 − 0.005 on batch 3"),
    (48, "champion", ledger.AUTOMATIC_ROLLBACK, "2", "1", "review", ROLLBACK_REASON),
]
# The champion of the moment on each batch: batch, version, live accuracy, minute.
BATCH_SCORES = [(1, "1", 0.84, 5), (2, "1", 0.81, 20), (3, "2", 0.83, 35), (4, "2", 0.64, 47),
                (5, "1", 0.80, 55)]  # fmt: skip


def release_history(home: Path, model_name: str) -> None:
    """A data DB whose ledger (written through ledger.record, as the release moves write it)
    tells RELEASE_STORY over the last hour: v1 champion, v2 challenges and is promoted, v3
    challenges and is retired, v2 loses on the next batch and is rolled back to v1; and the
    batch reports scoring the champion of the moment on each batch."""
    settings = Settings.from_env({"COVERTYPE_HOME": home, "COVERTYPE_MODEL_NAME": model_name})
    home.mkdir(parents=True)
    engine = db.make_engine(settings.data_db)
    db.ensure_schema(engine)
    start = datetime.now(UTC) - timedelta(minutes=60)
    with engine.begin() as conn:
        for minute, alias, action, old, new, actor, reason in RELEASE_STORY:
            when = start + timedelta(minutes=minute)
            move = ledger.Move(model_name, alias, action, old, new, actor, reason, moved_at=when)
            ledger.record(conn, move)
    for batch, version, accuracy, minute in BATCH_SCORES:
        drifted = batch == 4
        report = {
            "kind": "batch",
            "created_at": start + timedelta(minutes=minute),
            "model_name": model_name,
            "champion_version": version,
            "batch_number": batch,
            "reference_rows": 3000,
            "current_rows": 1000,
            "computed": True,
            "reason": "test",
            "dataset_drift": drifted,
            "drifted_features": 7 if drifted else 1,
            "features": 12,
            "drift_share": 7 / 12 if drifted else 1 / 12,
            "drift_share_threshold": 0.5,
            "feature_scores": "{}",
            "live_accuracy": accuracy,
            "live_macro_f1": accuracy - 0.05,
        }
        db.add_drift_report(engine, report)
    engine.dispose()


def chart_data(tab, title: str) -> list[pd.DataFrame]:
    """The data frames of the tab's one chart whose title starts with `title`, in the order
    of its layers (Streamlit sends them apart from the spec, in Arrow)."""
    charts = [chart.proto for chart in tab.get("vega_lite_chart")]
    [chart] = [c for c in charts if json.loads(c.spec)["title"].startswith(title)]
    frames = {d.name: pa.ipc.open_stream(d.data.data).read_pandas() for d in chart.datasets}
    spec = json.loads(chart.spec)  # data shared by every layer is the chart's own
    names = [layer.get("data", spec.get("data"))["name"] for layer in spec["layer"]]
    return [frames[name] for name in dict.fromkeys(names)]


def test_the_monitoring_tab_draws_the_release_timeline_and_the_ledger(
    monkeypatch, tmp_path, mlflow_server, champion
):
    release_history(tmp_path / "home", champion["model_name"])
    tab = monitoring_tab(monkeypatch, tmp_path / "home", mlflow_server.url, champion)
    warnings = [w.value for w in tab.warning]
    assert not [w for w in warnings if "data DB" in w or "MLflow" in w], warnings
    periods = chart_data(tab, "Releases: ")[0]  # the aliases' bars
    assert periods[["alias", "version", "current"]].values.tolist() == [
        ["champion", "1", False],
        ["challenger", "2", False],
        ["champion", "2", False],
        ["challenger", "3", False],
        ["champion", "1", True],
    ]
    [accuracy] = chart_data(tab, "Live accuracy of the serving version")
    assert accuracy[["version", "live_accuracy"]].values.tolist() == [
        [version, score] for _, version, score, _ in BATCH_SCORES
    ]
    [caption] = [c.value for c in tab.caption if c.value.startswith("Release ledger of")]
    assert caption.startswith(f"Release ledger of {champion['model_name']}: 6 moves")
    [table] = [frame.value for frame in tab.dataframe if "from → to" in frame.value.columns]
    assert table["action"].tolist()[:2] == ["automatic_rollback", "retire"]  # newest first
    assert table["from → to"].tolist()[:2] == ["v2 → v1", "v3 → –"]
    assert table["reason"][0] == ROLLBACK_REASON
    assert any(c.value.startswith("▲ promote · ● challenge") for c in tab.caption)


def test_screenshot_of_the_release_timeline_in_headless_chromium(
    inference_api, mlflow_server, champion, tmp_path
):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    release_history(tmp_path / "home", champion["model_name"])
    port = free_port()
    app = ServerProcess(
        ["ui", "--port", str(port)],
        env={
            "COVERTYPE_HOME": str(tmp_path / "home"),
            "COVERTYPE_API_URL": inference_api.url,
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "COVERTYPE_MODEL_NAME": champion["model_name"],
        },
        cwd=tmp_path,
        log_path=tmp_path / "ui.log",
    ).start(ready_path="/_stcore/health", timeout=120)
    try:
        with headless_chromium(tmp_path, height=1900) as browser:
            browser.get(app.url)
            [tab] = WebDriverWait(browser, 120).until(
                lambda b: [
                    t
                    for t in b.find_elements(By.CSS_SELECTOR, "[role=tab]")
                    if t.text.strip() == "Monitoring"
                ]
            )
            tab.click()

            def drawn(b) -> bool:  # the ledger's caption, and the tab's five charts drawn
                body = b.find_element(By.TAG_NAME, "body").text
                charts = b.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, svg.marks")
                return "Release ledger of" in body and len(charts) >= 5

            # A bound, not a target: a loaded CI machine once took over 60 s to draw a page.
            with contextlib.suppress(TimeoutException):
                WebDriverWait(browser, 120).until(drawn)
            SCREENSHOTS.mkdir(exist_ok=True)
            shot = SCREENSHOTS / "ui-releases.png"
            browser.save_screenshot(str(shot))
            body = browser.find_element(By.TAG_NAME, "body").text
            assert drawn(browser), (body, app.log())
            assert f"Release ledger of {champion['model_name']}: 6 moves" in body
    finally:
        app.stop()
    assert shot.stat().st_size > 50_000
    print(f"\nscreenshot: {shot}")
