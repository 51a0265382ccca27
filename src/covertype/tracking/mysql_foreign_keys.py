"""MLflow's user DB migrations made to run on MySQL/MariaDB."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def unique_foreign_key_names(url: str):
    """MLflow's first auth migration names two foreign keys `fk_user_id`; MySQL and MariaDB
    want the names unique in a database, so a fresh MySQL user DB fails ("Duplicate key on
    write or update", mlflow/mlflow#9642, #10964, open). While the migrations run, the second
    one is named after its table (no later migration refers to it by name)."""
    if not url.startswith("mysql"):
        yield
        return
    import sqlalchemy as sa
    from alembic.operations import Operations

    original = Operations.create_table

    def create_table(self, table_name, *columns, **kw):
        def renamed(column):
            if not (
                isinstance(column, sa.ForeignKeyConstraint)
                and column.name == "fk_user_id"
                and table_name != "experiment_permissions"
            ):
                return column
            targets = [element._colspec for element in column.elements]
            return sa.ForeignKeyConstraint(
                column.column_keys, targets, name=f"fk_{table_name}_user_id"
            )

        return original(self, table_name, *map(renamed, columns), **kw)

    # Patched on Alembic's class for the migrations' duration (mypy refuses any method assignment).
    Operations.create_table = create_table  # type: ignore[method-assign]
    try:
        yield
    finally:
        Operations.create_table = original  # type: ignore[method-assign]
