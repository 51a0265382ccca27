"""Moving the champion by hand: `covertype rollback` (back to the previous champion, or to
a version) and `covertype promote` (a version, e.g. to force one). The version must exist,
have its model files, and load and answer through the API's own path (skops with trusted
types, the predictor's compile and check, a warm-up answer); else nothing moves and the
error says why."""

from __future__ import annotations

import tempfile
from pathlib import Path

from covertype.errors import BadInput
from covertype.release import ledger
from covertype.release.ledger import Move
from covertype.release.moves import aliases, move
from covertype.settings import Settings
from covertype.tracking.client import connect


class ReleaseRefused(BadInput):
    """A manual move that cannot be made; the message says why. Nothing moved."""


def rollback(
    settings: Settings, reason: str, actor: str, to: str | None = None, client=None
) -> Move:
    """`champion` back to `to`, by default the version it replaced at its last move."""
    client = client or connect(settings)
    current = _champion(client, settings)
    if to is None:
        to = previous_champion(settings, current)
    return _move(client, settings, ledger.ROLLBACK, to, reason, actor, current)


def promote(settings: Settings, version: str, reason: str, actor: str, client=None) -> Move:
    """`champion` to `version`, whatever the gate said (checked on the next batch as any
    promotion: rolled back automatically if it loses there)."""
    client = client or connect(settings)
    current = aliases(client, settings).get(settings.mlflow.model_alias)
    return _move(client, settings, ledger.PROMOTE, version, reason, actor, current)


def previous_champion(settings: Settings, current: str) -> str:
    """The version `champion` pointed at before it moved to `current`, from the ledger."""
    from covertype import db

    engine = db.make_engine(settings.data_db)
    try:
        db.ensure_schema(engine)
        moved = [
            m
            for m in ledger.moves(engine, settings.mlflow.model_name)
            if m.alias == settings.mlflow.model_alias and m.to_version == current
        ]
    finally:
        engine.dispose()
    if not moved or moved[-1].from_version is None:
        raise ReleaseRefused(
            f"the release ledger has no champion before v{current}: name one with --to"
        )
    return moved[-1].from_version


def _champion(client, settings: Settings) -> str:
    current = aliases(client, settings).get(settings.mlflow.model_alias)
    if current is None:
        raise ReleaseRefused(
            f"{settings.mlflow.model_name} has no {settings.mlflow.model_alias}: "
            "nothing to roll back"
        )
    return current


def _move(client, settings, action, version, reason, actor, current) -> Move:
    alias = settings.mlflow.model_alias
    if not reason.strip():
        raise ReleaseRefused("--reason is empty: say why the champion moves")
    if version == current:
        raise ReleaseRefused(f"v{version} is the {alias} already: nothing to move")
    check_servable(client, settings, version)
    return move(
        client,
        settings,
        alias=alias,
        action=action,
        to_version=version,
        actor=actor,
        reason=reason.strip(),
        scores={"from_version": current, "by_hand": True},
    )


def check_servable(client, settings: Settings, version: str) -> None:
    """ReleaseRefused unless `version` exists and loads and answers as the API serves it."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from covertype import schema
    from covertype.serve.model_files import ModelLoadError, load_pipeline
    from covertype.serve.predictor_choice import ready_predictor
    from covertype.serve.records import EXAMPLE

    name = settings.mlflow.model_name
    try:
        source = client.get_model_version(name, version).source
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        found = sorted((v.version for v in client.search_model_versions(f"name='{name}'")), key=int)
        raise ReleaseRefused(
            f"{name} has no version {version!r}; its versions: {', '.join(found) or 'none'}"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp
            )
        except Exception as error:
            raise ReleaseRefused(
                f"v{version}'s model files cannot be downloaded: {_short(error)}"
            ) from None
        if not (Path(folder) / "MLmodel").exists():
            raise ReleaseRefused(f"v{version} has no model files at {source}")
        try:
            predictor, _ = ready_predictor(load_pipeline(Path(folder)), settings.serve.predictor)
            label, _ = predictor.classify_one(schema.validate_record(EXAMPLE))
        except ModelLoadError as error:
            raise ReleaseRefused(f"v{version} cannot be served: {_short(error)}") from None
        except Exception as error:
            raise ReleaseRefused(
                f"v{version} fails the API's check: {type(error).__name__}: {_short(error)}"
            ) from None
    if label not in range(len(schema.COVER_TYPE_NAMES)):
        raise ReleaseRefused(f"v{version} answers class {label!r}, not one of the 7")


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
