"""Moving `champion` or `challenger`: the alias in the MLflow registry, tags on the versions
involved and one ledger row, in one step. The ledger row is inserted in a transaction that
commits only after MLflow took the move, so a registry that fails leaves no row and no
alias moved (what it did tag before failing is overwritten by the next move)."""

from __future__ import annotations

import getpass
import json
import logging
import socket
from collections.abc import Mapping
from typing import Any

from covertype import db
from covertype.release import ledger
from covertype.release.ledger import Move
from covertype.settings import Settings

log = logging.getLogger(__name__)


def person(command: str) -> str:
    """Who moves an alias from a terminal: user@host and the command."""
    return f"{getpass.getuser()}@{socket.gethostname()} ({command})"


def aliases(client, settings: Settings) -> dict[str, str]:
    """Where the model's aliases point ({} when the model is not registered yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(settings.mlflow.model_name).aliases)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def move(
    client,
    settings: Settings,
    *,
    alias: str,
    action: str,
    to_version: str | None,
    actor: str,
    reason: str,
    scores: Mapping[str, Any] | None = None,
    engine=None,
) -> Move:
    """Point `alias` at `to_version` (None: remove it), tag both versions, record the move."""
    assert action in ledger.ACTIONS, action
    name = settings.mlflow.model_name
    from_version = aliases(client, settings).get(alias)
    done = Move(name, alias, action, from_version, to_version, actor, reason, dict(scores or {}))
    own = engine is None
    engine = engine or db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        with engine.begin() as conn:
            move_id = ledger.record(conn, done)
            _tag(client, name, done)
            if to_version is None:
                client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, to_version)
    finally:
        if own:
            engine.dispose()
    log.info(
        "release: %s %s → %s (%s)",
        alias,
        from_version or "none",
        to_version or "none",
        action,
        extra={"actor": actor, "reason": reason, "move_id": move_id},
    )
    return Move(**{**done.__dict__, "id": move_id})


def _tag(client, name: str, done: Move) -> None:
    """What each version involved says of the move: the new one when it took the alias,
    the old one when it left it, both the action, reason and scores."""
    at = done.moved_at.isoformat(timespec="seconds")
    common = {
        "release.last_action": f"{done.action} ({done.alias})",
        "release.last_reason": done.reason[:4000],
        "release.last_scores": json.dumps(done.scores, sort_keys=True)[:4000],
        "release.last_moved_at": at,
    }
    if done.to_version is not None:
        tags = common | {f"release.{done.alias}_since": at}
        for key, value in tags.items():
            client.set_model_version_tag(name, done.to_version, key, value)
    if done.from_version is not None and done.from_version != done.to_version:
        tags = common | {f"release.{done.alias}_until": at}
        for key, value in tags.items():
            client.set_model_version_tag(name, done.from_version, key, value)
