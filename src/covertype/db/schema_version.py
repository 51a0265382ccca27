"""Which revision of migrations/ a data DB is at, and bringing it to the head."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from covertype.db.lock import schema_lock
from covertype.db.tables import metadata
from covertype.errors import BadInput, Unavailable

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# Alembic's own table; read directly so that a DB at head costs one query.
_VERSION = sa.table("alembic_version", sa.column("version_num"))


class SchemaError(Unavailable):
    """The data DB's schema is not the one this code needs; the message says what to run."""


def alembic_config(conn: sa.Connection | None = None) -> Config:
    """Alembic's configuration without an ini file; migrations/env.py runs on `conn`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    (only,) = _scripts().get_heads()  # two heads would be a branch to merge first
    return only


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


@dataclass(frozen=True)
class State:
    """A data DB's revisions (alembic_version) and which of our tables it has."""

    url: str
    revisions: tuple[str, ...]
    tables: frozenset[str]

    @property
    def at_head(self) -> bool:
        return self.revisions == (head(),)

    @property
    def unknown(self) -> tuple[str, ...]:
        """Revisions this code has no migration for (a newer release made them)."""
        return tuple(r for r in self.revisions if r not in _known())

    def describe(self) -> str:
        if self.revisions:
            marks = " (head)" if self.at_head else ""
            return ", ".join(self.revisions) + marks
        if self.tables:
            return "no revision (tables made by create_all)"
        return "empty"

    def problem(self) -> str | None:
        """What keeps this code from using the DB, in one line naming what to do; None: nothing."""
        if self.at_head:
            return None
        where = f"the data DB {self.url}"
        if self.unknown:
            return (
                f"{where} is at revision {', '.join(self.unknown)}, which this covertype does "
                f"not know (its head is {head()}): a newer release migrated it; run that release"
            )
        if self.revisions:
            return (
                f"{where} is at revision {self.describe()}, older than this covertype's "
                f"{head()}: run `covertype db upgrade`"
            )
        if self.tables:
            return (
                f"{where} was made without migrations (no alembic_version table): "
                "run `covertype db upgrade` to adopt it, every row kept"
            )
        return f"{where} is empty: run `covertype db upgrade` to create its tables"


def read_state(conn: sa.Connection) -> State:
    revisions = MigrationContext.configure(conn).get_current_heads()
    tables = frozenset(sa.inspect(conn).get_table_names()).intersection(metadata.tables)
    conn.commit()
    return State(conn.engine.url.render_as_string(), tuple(sorted(revisions)), tables)


def current(engine: sa.Engine) -> State:
    with engine.connect() as conn:
        return read_state(conn)


@dataclass(frozen=True)
class Upgrade:
    before: State
    after: State

    def summary(self) -> str:
        if self.before.revisions == self.after.revisions:
            return f"{self.after.url}: already at {self.after.describe()}, nothing to do"
        return (
            f"{self.after.url}: upgraded from {self.before.describe()} to {self.after.describe()}"
        )


def upgrade(engine: sa.Engine, to: str = "head") -> Upgrade:
    """Bring the DB to revision `to`, holding the schema lock: a DB made by create_all is
    adopted (the baseline creates only what it lacks), an empty one created."""
    with engine.connect() as conn, schema_lock(conn):
        before = read_state(conn)
        if before.unknown and (problem := before.problem()):
            raise SchemaError(problem)
        try:
            command.upgrade(alembic_config(conn), to)
        except CommandError as error:  # an unknown `to`
            raise BadInput(
                f"--to {to}: {error}; `covertype db history` lists the revisions"
            ) from None
        conn.commit()
        done = Upgrade(before, read_state(conn))
    if done.before != done.after:
        log.info(
            "data DB schema upgraded",
            extra={"db": done.after.url, "from": before.describe(), "to": done.after.describe()},
        )
    return done


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    doc: str
    is_head: bool
    is_current: bool


def history(engine: sa.Engine | None = None) -> list[Revision]:
    """Every revision, newest first; which is the DB's current one when `engine` is given."""
    revisions = current(engine).revisions if engine is not None else ()
    return [
        Revision(
            script.revision,
            script.down_revision,  # type: ignore[arg-type]  # a str: no merges here
            script.doc,
            script.is_head,
            script.revision in revisions,
        )
        for script in _scripts().walk_revisions()
    ]


def ensure_schema(engine: sa.Engine) -> None:
    """A DB at head passes after one query; an empty one is brought to head; any other stops
    with a SchemaError naming what to run."""
    if _stamped(engine) == (head(),):
        return
    # Under the lock: what looked older may be an upgrade in progress elsewhere.
    with engine.connect() as conn, schema_lock(conn):
        state = read_state(conn)
        if not state.revisions and not state.tables:
            command.upgrade(alembic_config(conn), "head")
            conn.commit()
            log.info("data DB created at the head revision", extra={"db": state.url, "to": head()})
        elif problem := state.problem():
            raise SchemaError(problem)


def _stamped(engine: sa.Engine) -> tuple[str, ...] | None:
    try:
        with engine.connect() as conn:
            return tuple(conn.scalars(sa.select(_VERSION.c.version_num)))
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no alembic_version yet
        return None
