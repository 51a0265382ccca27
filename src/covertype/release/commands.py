"""`covertype releases` (the ledger; `review` decides now), `covertype rollback` and
`covertype promote`: thin commands over covertype.release."""

from __future__ import annotations

import typer

from covertype.settings import get_settings

app = typer.Typer(invoke_without_command=True)


@app.callback()
def releases(
    ctx: typer.Context,
    last: int = typer.Option(50, "--last", "-n", min=1, help="The newest moves shown."),
):
    """Every move of champion and challenger, oldest first: when, what, from → to, who, why."""
    if ctx.invoked_subcommand:
        return
    from covertype import db
    from covertype.release import ledger

    settings = get_settings()
    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        moves = ledger.moves(engine, settings.mlflow.model_name, last)
    finally:
        engine.dispose()
    if not moves:
        typer.echo(f"{settings.mlflow.model_name}: no release recorded yet")
        return
    typer.echo(table(moves))


def table(moves) -> str:
    """The ledger as aligned text columns."""
    rows = [("#", "when (UTC)", "alias", "action", "from → to", "by", "why")]
    for m in moves:
        rows.append((
            str(m.id), f"{m.moved_at:%Y-%m-%d %H:%M:%S}", m.alias, m.action,
            f"{m.from_version or '–'} → {m.to_version or '–'}", m.actor, m.reason,
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    )


@app.command()
def review(
    batch: int = typer.Option(None, "--batch", help="A collected batch [default: the newest]."),
):
    """Decide now, as the collection DAG does after each batch: the challenger promoted or
    retired on fresh rows, a newly promoted champion kept or rolled back."""
    from covertype.release.moves import person
    from covertype.release.review import review as run_review

    for line in run_review(get_settings(), person("covertype releases review"), batch):
        typer.echo(line)


def rollback(
    to: str = typer.Option(
        None, "--to", help="The version [default: the champion before the current one]."
    ),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the release ledger)."),
):
    """Move the champion back (the API swaps within COVERTYPE_SERVE_WATCH_SECONDS)."""
    from covertype.release import manual
    from covertype.release.moves import person

    done = manual.rollback(get_settings(), reason, person("covertype rollback"), to)
    typer.echo(f"champion {done.from_version} → {done.to_version}: {done.reason} (#{done.id})")


def promote(
    version: str = typer.Argument(..., help="A version of COVERTYPE_MODEL_NAME."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the release ledger)."),
):
    """Make a version champion now, whatever the gate said; the next batch checks it as any
    promotion (rolled back automatically if it loses there)."""
    from covertype.release import manual
    from covertype.release.moves import person

    done = manual.promote(get_settings(), version, reason, person("covertype promote"))
    typer.echo(f"champion {done.from_version or '–'} → {done.to_version}: {done.reason} "
               f"(#{done.id})")  # fmt: skip
