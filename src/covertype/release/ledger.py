"""The release ledger: one row of the data DB's `releases` per move of `champion` or
`challenger` (covertype.release.moves writes them; `covertype releases`, the UI's timeline
and the API's `covertype_releases_total` read them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from covertype.db.tables import releases

# What a row's `action` says happened (the alias it moved is in `alias`).
PROMOTE = "promote"  # champion → a version (the gate with no champion or in direct mode,
# the challenger winning on a fresh batch, `covertype promote`)
CHALLENGE = "challenge"  # challenger → a version that passed the gate
RETIRE = "retire"  # challenger removed: it lost on a fresh batch, or was replaced
ROLLBACK = "rollback"  # champion moved back by `covertype rollback`
AUTOMATIC_ROLLBACK = "automatic_rollback"  # champion moved back after losing on a batch
ACTIONS = (PROMOTE, CHALLENGE, RETIRE, ROLLBACK, AUTOMATIC_ROLLBACK)


@dataclass(frozen=True)
class Move:
    model_name: str
    alias: str
    action: str
    from_version: str | None
    to_version: str | None
    actor: str
    reason: str
    scores: dict[str, Any] = field(default_factory=dict)
    moved_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: int | None = None

    def row(self) -> dict[str, Any]:
        return {
            "moved_at": self.moved_at,
            "model_name": self.model_name,
            "alias": self.alias,
            "action": self.action,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "actor": self.actor[:250],
            "reason": self.reason,
            "scores": json.dumps(self.scores, sort_keys=True) if self.scores else None,
        }

    @classmethod
    def from_row(cls, row: Any) -> Move:
        moved_at = row["moved_at"]
        if moved_at.tzinfo is None:  # SQLite and MySQL give it back naive: it was UTC
            moved_at = moved_at.replace(tzinfo=UTC)
        return cls(
            model_name=row["model_name"],
            alias=row["alias"],
            action=row["action"],
            from_version=row["from_version"],
            to_version=row["to_version"],
            actor=row["actor"],
            reason=row["reason"],
            scores=json.loads(row["scores"]) if row["scores"] else {},
            moved_at=moved_at,
            id=row["id"],
        )


def record(conn: sa.Connection, move: Move) -> int:
    """Insert `move` in the caller's transaction (committed with the move it records); its id."""
    key = conn.execute(sa.insert(releases), move.row()).inserted_primary_key
    assert key is not None  # a single-row INSERT always has one
    return int(key[0])


def moves(engine: sa.Engine, model_name: str, limit: int | None = None) -> list[Move]:
    """The model's moves, oldest first (the newest `limit` of them, if given)."""
    query = sa.select(releases).where(releases.c.model_name == model_name)
    query = query.order_by(releases.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [Move.from_row(row) for row in reversed(rows)]


def counts(engine: sa.Engine, model_name: str) -> dict[str, int]:
    """How many moves of each action the model has had (every action, 0 included)."""
    query = (
        sa.select(releases.c.action, sa.func.count())
        .where(releases.c.model_name == model_name)
        .group_by(releases.c.action)
    )
    with engine.connect() as conn:
        found = {action: int(n) for action, n in conn.execute(query)}
    return dict.fromkeys(ACTIONS, 0) | found
