"""`covertype` command line: thin commands over the stage modules.

A command that meets a `CovertypeError` (unreachable source or registry, a training that
cannot run, a missing secret, an outdated data DB...) ends with its message on one line,
`covertype <command>: ...`, and the error's exit code: `run` is the console script.
"""

from __future__ import annotations

import sys

import typer

from covertype import logs
from covertype.db import commands as db_commands
from covertype.errors import CovertypeError
from covertype.release import commands as release_commands
from covertype.settings import SettingsError, get_settings, require, safe_url

app = typer.Typer(help="covertype: the Forest Cover Type MLOps platform.", no_args_is_help=True)
_invoked: list[str] = []  # the subcommand, for the error line


def run() -> None:
    """The `covertype` console script: the app, with the platform's errors as one line."""
    try:
        app()
    except CovertypeError as error:
        where = f"covertype {_invoked[0]}" if _invoked else "covertype"
        print(f"{where}: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None


@app.callback()
def main(
    ctx: typer.Context,
    log_level: str = typer.Option("INFO", help="Log level of the JSON logs on stderr."),
):
    logs.setup(log_level.upper())
    if ctx.invoked_subcommand:
        _invoked[:] = [ctx.invoked_subcommand]
    try:
        settings = get_settings()
    except SettingsError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    if settings.auth.on:
        import os

        from covertype.stack import logins

        # Beside a local stack, sign in as it does (its secrets where the environment has none).
        if logins.load(settings.home, os.environ):
            get_settings.cache_clear()


@app.command()
def up(
    fast: bool = typer.Option(
        False, "--fast", help="Demo timing: 30 s batches, 3 candidates, the first cycle in minutes."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every service's output."),
):
    """Run the whole platform locally under supervisord until Ctrl-C: source, MLflow,
    Airflow, API, UI, and Prometheus where it is installed; the data DB upgraded first."""
    from covertype.stack import commands

    raise typer.Exit(commands.up(fast=fast, verbose=verbose, echo=typer.echo))


@app.command()
def down():
    """Stop the local stack of COVERTYPE_HOME (every process of every service)."""
    from covertype.stack import commands

    raise typer.Exit(commands.down(get_settings(), echo=typer.echo))


@app.command()
def status():
    """The local stack per service: state, restarts, last exit, memory, health; the model."""
    from covertype.stack import commands

    raise typer.Exit(commands.status(get_settings(), echo=typer.echo))


@app.command()
def restart(service: str = typer.Argument(..., help="A service of `covertype status`.")):
    """Restart one service of the local stack, forgetting its exits (also a failed one)."""
    from covertype.stack import commands

    raise typer.Exit(commands.restart(get_settings(), service, echo=typer.echo))


@app.command()
def source(
    host: str = typer.Option(None, help="Bind address [default: COVERTYPE_SOURCE_HOST]."),
    port: int = typer.Option(None, help="Port [default: COVERTYPE_SOURCE_PORT]."),
):
    """Serve the covertype rows in rotating batches (the course's data API)."""
    import uvicorn

    from covertype.source import create_app

    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.source.host,
        port=port or settings.source.port,
        log_config=logs.logging_config(),
        timeout_graceful_shutdown=5,
    )


@app.command()
def ingest(
    until_exhausted: bool = typer.Option(
        False, "--until-exhausted", help="Keep collecting each new batch until all was served."
    ),
    every: float = typer.Option(
        None, help="Seconds between calls with --until-exhausted [default: batch seconds / 3]."
    ),
):
    """Fetch the current batch from the source API and store it in the data DB."""
    from covertype import db
    from covertype.ingest import ingest_once, ingest_until_exhausted

    settings = get_settings()
    if not until_exhausted:
        typer.echo(ingest_once(settings).summary())
        return
    results = ingest_until_exhausted(settings, every, on_result=lambda r: typer.echo(r.summary()))

    stored = sum(r.stored for r in results)
    quarantined = sum(r.quarantined for r in results)
    batches = sorted({r.batch_number for r in results if r.batch_number})
    rows, held = db.count_rows(settings.data_db)
    typer.echo(
        f"collection finished after {len(results)} calls: stored {stored} rows of batches "
        f"{batches}, quarantined {quarantined}; data DB {safe_url(settings.data_db)} now "
        f"holds {rows} rows in cover_type and {held} in quarantine"
    )


@app.command()
def train(
    n_iter: int = typer.Option(
        None, "--n-iter", help="Candidates [default: COVERTYPE_TRAIN_N_ITER]."
    ),
    family: list[str] = typer.Option(
        None, "--family", help="Model family to search (repeatable): lightgbm, extra_trees, svm."
    ),
):
    """Random search over model families on the data DB; register; gate the champion alias."""
    from covertype.train import FAMILIES
    from covertype.train import train as run_training

    result = run_training(get_settings(), n_iter, family or FAMILIES, progress=typer.echo)
    typer.echo(
        f"{result.model_name} version {result.version} ({result.family}), holdout macro F1 "
        f"{result.holdout_macro_f1:.4f}, accuracy {result.holdout_accuracy:.4f}: {result.decision}"
    )


@app.command()
def reproduce(
    version: str = typer.Argument(..., help="A version of COVERTYPE_MODEL_NAME."),
    source: str = typer.Option(
        "snapshot", "--from", help="snapshot (the rows stored with it) or db (the data DB now)."
    ),
):
    """Refit a version from what made it; compare data, draws, holdout answers and metrics.
    Exit 0 identical, 1 different, 2 nothing could be checked."""
    from covertype.reproduce.run import reproduce as run_reproduction

    result = run_reproduction(get_settings(), version, source, progress=typer.echo)
    typer.echo(result.table())
    typer.echo(f"version {result.version} from {result.source}: {result.summary} "
               f"(run {result.run_id})")  # fmt: skip
    raise typer.Exit(0 if result.identical else 1)


@app.command()
def monitor(
    batch: int = typer.Option(
        None,
        "--batch",
        help="A collected batch [default: the predictions logged since the last report].",
    ),
):
    """A drift report now, as the DAGs make them: a batch or the logged predictions against
    the champion's training rows (stored, logged to MLflow). Exit 1 when it was not computed."""
    from covertype.monitor.reports import batch_report, predictions_report

    settings = get_settings()
    report = batch_report(settings, batch) if batch else predictions_report(settings)
    typer.echo(report.reason)
    if report.live_accuracy is not None:
        f1 = "–" if report.live_macro_f1 is None else f"{report.live_macro_f1:.4f}"
        typer.echo(f"champion v{report.champion_version} on it: accuracy "
                   f"{report.live_accuracy:.4f}, macro F1 {f1}")  # fmt: skip
    if report.report_id is not None:
        typer.echo(f"drift_reports id {report.report_id}, MLflow run {report.mlflow_run_id}")
    if not report.computed:
        raise typer.Exit(1)


@app.command()
def mlflow(
    host: str = typer.Option(None, help="Bind address [default: COVERTYPE_MLFLOW_HOST]."),
    port: int = typer.Option(None, help="Port [default: COVERTYPE_MLFLOW_PORT]."),
):
    """Run the MLflow tracking server with the store and artifacts of the settings."""
    from covertype.tracking.server import exec_server

    exec_server(get_settings(), host, port)


@app.command()
def prometheus():
    """Run Prometheus (on PATH) scraping the local stack, with the platform's alert rules."""
    from covertype.stack import prometheus as local

    local.exec_server(get_settings())


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def airflow(ctx: typer.Context):
    """Run `airflow <args>` configured from the settings (e.g. `covertype airflow standalone`)."""
    from covertype.orchestrate.airflow_config import exec_airflow

    exec_airflow(get_settings(), ctx.args)


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address [default: COVERTYPE_SERVE_HOST]."),
    port: int = typer.Option(None, help="Port [default: COVERTYPE_SERVE_PORT]."),
):
    """Serve the champion model: /predict, /predict/batch, /health, /ready, /model, /metrics."""
    from covertype.serve import run as serve_api

    serve_api(get_settings(), host, port)


@app.command()
def ui(
    host: str = typer.Option(None, help="Bind address [default: COVERTYPE_UI_HOST]."),
    port: int = typer.Option(None, help="Port [default: COVERTYPE_UI_PORT]."),
):
    """The Streamlit front end: a prediction form, CSV batches, the model card, monitoring."""
    import os
    import sys
    from pathlib import Path

    from covertype.ui import app as page

    settings = get_settings()
    if settings.auth.on:
        require(settings, "auth.ui_password", "the UI opens only with a password")
    streamlit = str(Path(sys.executable).parent / "streamlit")
    command = [
        streamlit, "run", page.__file__,
        "--server.address", host or settings.ui.host,
        "--server.port", str(port or settings.ui.port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    os.execv(streamlit, command)


@app.command()
def loadtest(
    users: int = typer.Option(10, "--users", "-u", help="Concurrent simulated users."),
    spawn_rate: float = typer.Option(10, "--spawn-rate", "-r", help="Users started per second."),
    run_time: str = typer.Option("10s", "--run-time", "-t", help="e.g. 30s, 5m."),
    requests: int = typer.Option(
        None, "--requests", "-n", help="Headless: end once this many requests were answered."
    ),
    web: bool = typer.Option(False, "--web", help="Locust's web UI (login) instead of headless."),
    master: bool = typer.Option(False, "--master", help="Run as the master of workers."),
    worker: bool = typer.Option(False, "--worker", help="Run as a worker of --master-host."),
    master_host: str = typer.Option("127.0.0.1", help="The master a worker joins."),
    expect_workers: int = typer.Option(None, help="Master: wait for this many workers."),
):
    """Load-test the inference API with Locust; headless prints a summary and writes reports."""
    import os

    from covertype import loadtest as lt

    settings = get_settings()
    if web or master or worker:  # long-running: become the locust process
        command = lt.locust_command(
            settings,
            web=web,
            master=master,
            worker=worker,
            master_host=master_host,
            expect_workers=expect_workers,
            users=None if web else users,
            spawn_rate=None if web else spawn_rate,
            run_time=None if web else run_time,
        )
        os.execv(command[0], command)
    summary = lt.run_headless(settings, users, spawn_rate, run_time, requests=requests)
    typer.echo(summary.table())
    if summary.total.failures or summary.exit_code:
        raise typer.Exit(1)


app.add_typer(db_commands.app, name="db", help="The data DB's schema: upgrade, current, history.")
app.add_typer(release_commands.app, name="releases")
app.command()(release_commands.rollback)
app.command()(release_commands.promote)

if __name__ == "__main__":
    run()
