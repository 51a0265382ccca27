"""The shares a version was fitted on, read back: from its snapshot, or from the data DB's
current rows with the snapshot's row keys (and which of them differ)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from covertype import db, schema
from covertype.settings import Settings
from covertype.train import snapshot
from covertype.train.data import Share, Split, load_rows

SOURCES = ("snapshot", "db")


@dataclass
class DataDifference:
    """Rows of the recorded shares the data DB no longer holds as they were."""

    changed: int = 0
    missing: int = 0
    batches: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.changed + self.missing

    def text(self) -> str:
        parts = [f"{n} row{'s' * (n != 1)} {what}" for n, what in
                 ((self.changed, "changed"), (self.missing, "missing")) if n]  # fmt: skip
        where = ", ".join(str(b) for b in self.batches)
        return f"{' and '.join(parts)} (batch{'es' * (len(self.batches) != 1)} {where})"


def from_snapshot(manifest: dict, tracking_uri: str) -> dict[str, pd.DataFrame]:
    """Each share's rows from its snapshot, checked against both recorded digests."""
    return {name: snapshot.load(manifest["shares"][name], tracking_uri) for name in snapshot.SHARES}


def from_db(
    recorded: dict[str, pd.DataFrame], settings: Settings
) -> tuple[dict[str, pd.DataFrame], DataDifference]:
    """Each share's rows as the data DB holds them now, selected by the recorded row keys in
    the recorded order; and the rows that changed or went missing, with their batches."""
    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        current = load_rows(engine).set_index("row_key", drop=False)
    finally:
        engine.dispose()
    shares, difference, batches = {}, DataDifference(), set()
    fields = list(schema.FIELDS)
    for name, rows in recorded.items():
        present = rows["row_key"].isin(current.index)
        difference.missing += int((~present).sum())
        batches |= set(rows.loc[~present, "batch_number"].tolist())
        now = current.loc[rows.loc[present, "row_key"]].reset_index(drop=True)
        before = rows[present].reset_index(drop=True)
        changed = (now[fields] != before[fields]).any(axis=1)
        difference.changed += int(changed.sum())
        batches |= set(before.loc[changed, "batch_number"].tolist())
        shares[name] = now
    difference.batches = sorted(int(b) for b in batches)
    return shares, difference


def split_of(shares: dict[str, pd.DataFrame]) -> Split:
    return Split(*(Share(shares[name]) for name in snapshot.SHARES))
