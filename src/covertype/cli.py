"""`covertype` command line: thin commands over the stage modules."""

from __future__ import annotations

import typer

from covertype import logs
from covertype.settings import SettingsError, get_settings

app = typer.Typer(help="covertype: the Forest Cover Type MLOps platform.", no_args_is_help=True)


@app.callback()
def main(log_level: str = typer.Option("INFO", help="Log level of the JSON logs on stderr.")):
    logs.setup(log_level.upper())
    try:
        get_settings()
    except SettingsError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None


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
        host=host or settings.source_host,
        port=port or settings.source_port,
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
    from covertype.ingest import SourceError, ingest_once, ingest_until_exhausted

    settings = get_settings()
    try:
        if not until_exhausted:
            typer.echo(ingest_once(settings).summary())
            return
        results = ingest_until_exhausted(
            settings, every, on_result=lambda r: typer.echo(r.summary())
        )
    except SourceError as error:
        typer.echo(f"ingest failed: {error}", err=True)
        raise typer.Exit(1) from None
    from covertype import db

    stored = sum(r.stored for r in results)
    quarantined = sum(r.quarantined for r in results)
    batches = sorted({r.batch_number for r in results if r.batch_number})
    rows, held = db.count_rows(settings.data_db)
    typer.echo(
        f"collection finished after {len(results)} calls: stored {stored} rows of batches "
        f"{batches}, quarantined {quarantined}; data DB {_safe_url(settings.data_db)} now "
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
    from covertype.tracking import TrackingUnreachable
    from covertype.train import FAMILIES, TrainingError
    from covertype.train import train as run_training

    try:
        result = run_training(get_settings(), n_iter, family or FAMILIES, progress=typer.echo)
    except (TrainingError, TrackingUnreachable) as error:
        typer.echo(f"train failed: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{result.model_name} version {result.version} ({result.family}), holdout macro F1 "
        f"{result.holdout_macro_f1:.4f}, accuracy {result.holdout_accuracy:.4f}: {result.decision}"
    )


@app.command()
def mlflow(
    host: str = typer.Option(None, help="Bind address [default: COVERTYPE_MLFLOW_HOST]."),
    port: int = typer.Option(None, help="Port [default: COVERTYPE_MLFLOW_PORT]."),
):
    """Run the MLflow tracking server with the store and artifacts of the settings."""
    from covertype.tracking import exec_server

    exec_server(get_settings(), host, port)


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address [default: COVERTYPE_SERVE_HOST]."),
    port: int = typer.Option(None, help="Port [default: COVERTYPE_SERVE_PORT]."),
):
    """Serve the champion model: /predict, /predict/batch, /health, /ready, /model, /metrics."""
    from covertype.serve import run

    run(get_settings(), host, port)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    app()
