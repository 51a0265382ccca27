"""Alembic's entry point, run by covertype.db.schema_version on the connection it passes
(which holds the schema lock). A new revision, from a DB at head and the changed tables.py:

    from alembic import command
    from covertype.db import make_engine, schema_version
    with make_engine(URL).connect() as conn:
        command.revision(schema_version.alembic_config(conn), "what changes", autogenerate=True)
"""

from alembic import context

from covertype.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations through covertype.db.schema_version (a connection)")
# render_as_batch: SQLite alters a column only by copying its table; the op works elsewhere.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
