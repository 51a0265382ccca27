"""Locust users for the inference API: real records, a weighted mix of /predict and
/predict/batch, and every answer checked for content, not only status.

Run through `covertype loadtest` (headless, reports, summary) or plain `locust -f` with the
COVERTYPE_* settings in the environment. The web UI (`--web-login`) asks for
COVERTYPE_LOCUST_USER / COVERTYPE_LOCUST_PASSWORD.
"""

from __future__ import annotations

import hmac
import logging
import os
import random

from locust import HttpUser, between, events, task

from covertype import schema
from covertype.loadtest import load_records
from covertype.settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()
RECORDS = load_records(settings)
BATCH_SIZE = 20


def check(answer: object, records: list[dict]) -> str | None:
    """What is wrong with an answer to these records, or None."""
    answers = answer if isinstance(answer, list) else [answer]
    if len(answers) != len(records):
        return f"{len(answers)} answers to {len(records)} records"
    for item in answers:
        if not isinstance(item, dict):
            return f"answer {item!r} is not an object"
        cover_type = item.get("cover_type")
        if not isinstance(cover_type, int) or not 0 <= cover_type < len(schema.COVER_TYPE_NAMES):
            return f"cover_type {cover_type!r} is not a class 0..6"
        if item.get("cover_type_name") != schema.COVER_TYPE_NAMES[cover_type]:
            return f"cover_type_name {item.get('cover_type_name')!r} is not class {cover_type}'s"
        if not item.get("model_version"):
            return "no model_version"
    return None


class InferenceUser(HttpUser):
    wait_time = between(0.0, 0.05)
    host = settings.serve.url

    def on_start(self) -> None:
        self.client.headers.update(settings.auth.api_headers)  # COVERTYPE_API_KEY

    def _post(self, path: str, body: object, records: list[dict]) -> None:
        with self.client.post(path, json=body, catch_response=True, name=path) as response:
            if response.status_code == 0:  # no answer at all
                response.failure(f"no answer: {response.error}")
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                problem = check(response.json(), records)
            except ValueError:
                problem = f"not JSON: {response.text[:200]}"
            if problem:
                response.failure(problem)

    @task(9)
    def predict(self) -> None:
        record = random.choice(RECORDS)
        self._post("/predict", record, [record])

    @task(1)
    def predict_batch(self) -> None:
        records = random.sample(RECORDS, min(BATCH_SIZE, len(RECORDS)))
        self._post("/predict/batch", records, records)


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument(
        "--stop-after-requests",
        type=int,
        default=0,
        help="End the run once this many requests were answered (0: only --run-time ends it)",
    )


@events.init.add_listener
def _stop_after_requests(environment, **_kwargs) -> None:
    """A run of N requests, whatever the machine's speed (a run time may end before the
    first user made one on a cold machine)."""
    limit = environment.parsed_options.stop_after_requests if environment.parsed_options else 0
    if not limit or environment.runner is None:
        return
    seen = [0]

    @events.request.add_listener
    def _count(**_request) -> None:
        seen[0] += 1
        if seen[0] == limit:
            import gevent

            log.info("stopping after %s requests", limit)
            gevent.spawn(environment.runner.quit)  # not from inside the request's own hook


@events.init.add_listener
def _web_login(environment, **_kwargs) -> None:
    """A login page for the web UI, with the credentials of the settings."""
    web = environment.web_ui
    if web is None or not environment.parsed_options.web_login:
        return
    from flask import redirect, request, session, url_for
    from flask_login import UserMixin, login_user

    password_setting = settings.loadtest.password
    if password_setting is None:
        raise SystemExit("COVERTYPE_LOCUST_PASSWORD is not set: the web UI needs a login")

    class Operator(UserMixin):
        def __init__(self, name: str):
            self.id = name

    web.app.secret_key = os.urandom(32)
    web.auth_args = {"username_password_callback": "/login_submit"}

    @web.login_manager.user_loader
    def load_user(name: str):
        return Operator(name) if name == settings.loadtest.user else None

    @web.app.route("/login_submit", methods=["POST"])
    def login_submit():
        name = request.form.get("username", "")
        password = request.form.get("password", "")
        secret = password_setting.get_secret_value()
        if name == settings.loadtest.user and hmac.compare_digest(password, secret):
            login_user(Operator(name))
            return redirect(url_for("locust.index"))
        session["auth_error"] = "Wrong user name or password"
        return redirect(url_for("locust.login"))


@events.init.add_listener
def _final_csv(environment, **_kwargs) -> None:
    """Write the CSV reports once more at exit: Locust writes them every second only, so a
    short run (or a run's last second) is missing from them otherwise. At exit, because
    Locust's own buffered writes still land when it closes its files, after its last event."""
    options = environment.parsed_options
    if options is None or not options.csv_prefix or environment.runner is None:
        return
    import atexit
    import csv

    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    final = StatsCSV(environment, PERCENTILES_TO_REPORT)

    def write() -> None:
        for suffix, rows in (("stats", final.requests_csv), ("failures", final.failures_csv)):
            with open(f"{options.csv_prefix}_{suffix}.csv", "w", newline="") as file:
                rows(csv.writer(file))

    atexit.register(write)
