"""The model holder's side of the MLflow registry: where `models:/{name}@{alias}` points,
whether the registry answered (`RegistryState`, what /ready shows), and a version's files
downloaded into the local model cache."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from covertype.errors import Unavailable
from covertype.serve.model_cache import ModelCache
from covertype.serve.served_model import RegistryState, now
from covertype.settings import Settings
from covertype.tracking.client import alias_missing, registry_client

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


class RegistryUnreachable(Unavailable):
    """The registry did not answer (connection refused, timeout, 5xx)."""


class Reporter(Protocol):
    def registry_checked(self, reachable: bool) -> None: ...


class AliasLookup:
    """Asks the registry where one alias points; keeps `state` up to date and tells the
    reporter (the API's metrics) whether the registry answered."""

    def __init__(self, settings: Settings, alias: str, reporter: Reporter):
        self.settings, self.alias, self.reporter = settings, alias, reporter
        self.name = settings.mlflow.model_name
        self.state = RegistryState(settings.mlflow.tracking_uri)
        self.missing: str | None = None  # the registry's words when the alias was not found
        self._client: MlflowClient | None = None  # made at the first check

    @property
    def target(self) -> str:
        return f"models:/{self.name}@{self.alias}"

    def points_to(self):
        """The ModelVersion the alias points at, None when there is no such alias (both:
        the registry answered); RegistryUnreachable when it did not."""
        from mlflow.exceptions import MlflowException

        try:
            version = self._mlflow().get_model_version_by_alias(self.name, self.alias)
        except MlflowException as error:
            try:
                missing = alias_missing(self._mlflow(), self.name, error)
            except Exception as asking:  # the registry went away between the two calls
                raise RegistryUnreachable(f"{type(asking).__name__}: {short(asking)}") from None
            if not missing:
                raise RegistryUnreachable(short(error)) from None
            self.missing = short(error)
            self.answered(None)
            return None
        except Exception as error:  # whatever keeps us from an answer: ask again later
            raise RegistryUnreachable(f"{type(error).__name__}: {short(error)}") from None
        self.answered(str(version.version))
        return version

    def answered(self, version: str | None) -> None:
        state = self.state
        if state.reachable is False:
            log.info(
                "registry reachable again",
                extra={
                    "uri": state.uri,
                    "alias": self.alias,
                    "after_failed_checks": state.failures,
                },
            )
        state.reachable, state.champion_version, state.last_checked = True, version, now()
        state.last_error, state.failures = None, 0
        self.reporter.registry_checked(True)

    def unreachable(self, error: str, serving: str | None, level: int = logging.WARNING) -> None:
        state = self.state
        state.reachable, state.last_checked, state.last_error = False, now(), error
        state.failures += 1
        log.log(
            level,
            "registry unreachable; "
            + ("serving the model in memory" if serving else "no model loaded yet"),
            extra={
                "uri": state.uri,
                "alias": self.alias,
                "failed_checks": state.failures,
                "serving_version": serving,
                "retry_seconds": self.settings.serve.watch_seconds,
                "error": error,
            },
        )
        self.reporter.registry_checked(False)

    def fetch(self, version: str, cache: ModelCache) -> Path:
        """The model folder of `version` in the local cache, downloaded if not there."""
        if cache.has(version):
            return cache.folder(version)
        import mlflow.artifacts

        scratch = cache.scratch()
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{self.name}/{version}",
                dst_path=str(scratch),
                tracking_uri=self.settings.mlflow.tracking_uri,
                registry_uri=self.settings.mlflow.tracking_uri,
            )
            return cache.keep(scratch, version)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            self._client = registry_client(self.settings)
        return self._client


def short(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
