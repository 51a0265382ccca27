"""`covertype db upgrade|current|history`: the data DB's schema revisions."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import typer

app = typer.Typer(no_args_is_help=True)


def _one_line(error: Exception) -> str:
    import sqlalchemy as sa

    if isinstance(error, sa.exc.DBAPIError):  # the server refused us or did not answer
        cause = str(error.orig).splitlines()[0] if error.orig else type(error).__name__
        return f"the data DB did not answer: {cause}"
    return str(error)


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """Errors a user acts on as one line on stderr and the error's exit code."""
    import sqlalchemy as sa

    from covertype.errors import CovertypeError

    try:
        yield
    except (CovertypeError, sa.exc.DBAPIError) as error:
        typer.echo(f"covertype db: {_one_line(error)}", err=True)
        raise typer.Exit(getattr(error, "exit_code", 1)) from None


@contextlib.contextmanager
def _data_db() -> Iterator:
    from covertype import db
    from covertype.settings import get_settings

    engine = db.make_engine(get_settings().data_db)
    try:
        with _one_line_errors():
            yield engine
    finally:
        engine.dispose()


@app.command()
def upgrade(
    to: str = typer.Option(
        "head", "--to", help="Revision to upgrade to (see `covertype db history`)."
    ),
):
    """Bring the data DB to the head revision (or --to): creates an empty one, adopts one
    made by create_all, keeping every row. Safe to run from several processes at once."""
    from covertype.db import schema_version

    with _data_db() as engine:
        typer.echo(schema_version.upgrade(engine, to).summary())


@app.command()
def current():
    """The data DB's revision, and what to run when it is not the head."""
    from covertype.db import schema_version

    with _data_db() as engine:
        state = schema_version.current(engine)
    typer.echo(f"{state.url}: {state.describe()}")
    if problem := state.problem():
        typer.echo(problem)


@app.command()
def history():
    """Every revision, newest first, marking the head and the data DB's current one."""
    from covertype.db import schema_version

    with _data_db() as engine:
        revisions = schema_version.history(engine)
    for r in revisions:
        marks = [m for m, on in (("head", r.is_head), ("current", r.is_current)) if on]
        title = r.doc.splitlines()[0] if r.doc else ""
        shown = f" ({', '.join(marks)})" if marks else ""
        typer.echo(f"{r.down_revision or '<base>'} -> {r.revision}{shown}: {title}")


def upgrade_before_start(url: str, echo: Callable[[str], None]) -> bool:
    """`covertype up`'s upgrade before any service writes, saying what it did; False (and
    why, in one line) when the DB could not be upgraded."""
    import sqlalchemy as sa

    from covertype import db
    from covertype.db import schema_version
    from covertype.errors import CovertypeError

    engine = db.make_engine(url)
    try:
        with _quiet("alembic", schema_version.log.name):  # `up` says it in one line
            echo(f"data DB {schema_version.upgrade(engine).summary()}")
        return True
    except (CovertypeError, sa.exc.DBAPIError) as error:
        echo(f"covertype up: the data DB could not be upgraded: {_one_line(error)}")
        return False
    finally:
        engine.dispose()


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Only warnings and errors from `loggers` meanwhile."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
