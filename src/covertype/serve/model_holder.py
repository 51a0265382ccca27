"""The served model: loaded once, kept in memory, swapped when the alias moves.

`ModelHolder.current` is the one reference requests read, once per request, so an answer
carries the version that computed it. A watcher thread asks the registry every
COVERTYPE_SERVE_WATCH_SECONDS where `models:/{name}@{alias}` points; when it moved, the new
version is loaded beside the old one (download, load, compile the fast path and check it
against the pipeline, warm up) and only then replaces the reference, so no request waits
on a load or sees half a model. A registry that does not answer is logged and asked again
next time; the model in memory keeps serving.

The last loaded version is kept in COVERTYPE_SERVE_MODEL_CACHE (model files and a pointer
with its metadata). A (re)start serves it at once, before the registry is asked, so an API
that crashed is back in seconds whether MLflow answers or not; the watcher's first check
swaps in whatever the alias points at now. Models are unpacked with skops trusting only
`model_artifact.TRUSTED_TYPES`, whatever the stored files claim.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from covertype import schema
from covertype.errors import Unavailable
from covertype.serve.answers import Answers
from covertype.serve.heap import freeze_heap
from covertype.serve.model_cache import ModelCache
from covertype.serve.model_files import ModelLoadError, load_pipeline
from covertype.serve.predictor_choice import compile_predictor
from covertype.serve.records import EXAMPLE, EXAMPLE_2
from covertype.serve.served_model import RegistryState, ServedModel, now
from covertype.settings import Settings
from covertype.tracking.client import alias_missing, registry_client

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

FROM_REGISTRY = "registry"
FROM_CACHE = "local cache"
FROM_MEMORY = "memory"  # a pipeline handed to `serve_pipeline` (tests)


class Observer(Protocol):
    """What the holder reports (the API's metrics)."""

    def model_served(self, served: ServedModel, swapped: bool) -> None: ...

    def model_loaded(self, source: str, ok: bool, seconds: float | None = None) -> None: ...

    def registry_checked(self, reachable: bool) -> None: ...


class NoObserver:
    """An observer that ignores everything: a holder without metrics."""

    def model_served(self, served: ServedModel, swapped: bool) -> None:
        pass

    def model_loaded(self, source: str, ok: bool, seconds: float | None = None) -> None:
        pass

    def registry_checked(self, reachable: bool) -> None:
        pass


class RegistryUnreachable(Unavailable):
    """The registry did not answer (connection refused, timeout, 5xx)."""


class ModelNotReady(Unavailable):
    """No model is loaded yet (HTTP 503, with when to ask again)."""


class ModelHolder:
    """The model being served, and the watcher that replaces it when the alias moves.
    `watch=False`: the registry is never asked (no MLflow, no thread); models come only
    through `serve_pipeline`."""

    def __init__(self, settings: Settings, observer: Observer | None = None, watch: bool = True):
        self.settings = settings
        self.name, self.alias = settings.mlflow.model_name, settings.mlflow.model_alias
        self.interval = settings.serve.watch_seconds
        self.observer: Observer = observer or NoObserver()
        self.watch = watch
        self.current: ServedModel | None = None
        self.registry = RegistryState(settings.mlflow.tracking_uri)
        self.last_load_error: str | None = None
        self.cache = ModelCache(
            settings.serve.model_cache_dir, self.name, self.alias, settings.mlflow.tracking_uri
        )
        self._client: MlflowClient | None = None  # made at the first registry check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one load at a time (start-up, watcher, serve_pipeline)

    @property
    def target(self) -> str:
        return f"models:/{self.name}@{self.alias}"

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """The last served version from the local cache at once, then the registry: asked
        here when nothing was cached, else by the watcher thread right away. A restart after
        a crash serves within seconds, MLflow up or not, and MLflow's client (seconds to
        import) is not on that path; a version the alias left meanwhile is swapped at the
        watcher's first check."""
        if not self.watch:
            return
        self.cache.drop_stale_downloads()
        self._load_cached()
        if self.current is None:
            try:
                self.check()
            except Exception:
                log.exception("first model check failed", extra={"model": self.target})
        self._thread = threading.Thread(
            target=self._watch, args=(self.current is not None,), name="model-watcher", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _watch(self, check_now: bool) -> None:
        while not self._stop.wait(0 if check_now else self.interval):
            check_now = False
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise
                log.exception("model watcher check failed", extra={"model": self.target})

    # ------------------------------------------------------------ one check

    def check(self) -> None:
        """Ask where the alias points; load and swap when it moved."""
        with self._lock:
            try:
                version = self._champion()
            except RegistryUnreachable as error:
                self._registry_down(str(error))
                return
            if version is None:
                return
            if self.current is not None and self.current.version == str(version.version):
                self._retag(dict(version.tags))
                return
            self._load(version)

    def _retag(self, tags: dict[str, str]) -> None:
        """The served version's tags as the registry has them now (a reproduction tags a
        version after it was loaded): the same model, the latest description."""
        current = self.current
        if current is not None and current.tags != tags:
            self.current = dataclasses.replace(current, tags=tags)

    def _champion(self):
        """The ModelVersion the alias points at, None if there is none (both: registry up)."""
        from mlflow.exceptions import MlflowException

        try:
            version = self._mlflow().get_model_version_by_alias(self.name, self.alias)
        except MlflowException as error:
            try:
                missing = alias_missing(self._mlflow(), self.name, error)
            except Exception as asking:  # the registry went away between the two calls
                raise RegistryUnreachable(f"{type(asking).__name__}: {_short(asking)}") from None
            if not missing:
                raise RegistryUnreachable(_short(error)) from None
            self._registry_up(None)
            if self.current is None:
                self.last_load_error = f"the registry has no {self.target}: {_short(error)}"
                log.info("no champion yet", extra={"model": self.target, "error": _short(error)})
            return None
        except Exception as error:  # whatever keeps us from an answer: ask again later
            raise RegistryUnreachable(f"{type(error).__name__}: {_short(error)}") from None
        self._registry_up(str(version.version))
        return version

    def _registry_up(self, version: str | None) -> None:
        state = self.registry
        if state.reachable is False:
            log.info(
                "registry reachable again",
                extra={"uri": state.uri, "after_failed_checks": state.failures},
            )
        state.reachable, state.champion_version, state.last_checked = True, version, now()
        state.last_error, state.failures = None, 0
        self.observer.registry_checked(True)

    def _registry_down(self, error: str) -> None:
        state = self.registry
        state.reachable, state.last_checked, state.last_error = False, now(), error
        state.failures += 1
        log.warning(
            "registry unreachable; "
            + ("serving the model in memory" if self.current else "no model loaded yet"),
            extra={
                "uri": state.uri,
                "failed_checks": state.failures,
                "serving_version": self.current.version if self.current else None,
                "retry_seconds": self.interval,
                "error": error,
            },
        )
        self.observer.registry_checked(False)

    # ------------------------------------------------------------ loading and swapping

    def serve_pipeline(
        self,
        pipeline,
        version: str,
        tags: dict[str, str] | None = None,
        run_id: str = "",
        source: str = FROM_MEMORY,
    ) -> ServedModel:
        """Serve a fitted pipeline already in memory, through the same compile, check and
        swap as a registry version (how the unit tests serve a model without MLflow)."""
        with self._lock:
            started = time.perf_counter()
            try:
                served = self._prepare(pipeline, version, tags or {}, run_id, source)
            except Exception as error:
                self._load_failed(version, source, error)
                raise
            self._swap(served, time.perf_counter() - started)
        return served

    def _load(self, version) -> None:
        number = str(version.version)
        started = time.perf_counter()
        try:
            folder = self._fetch(number)
            tags, run_id = dict(version.tags), version.run_id or ""
            served = self._serve_from(folder, number, tags, run_id, FROM_REGISTRY)
        except Exception as error:
            self._load_failed(number, FROM_REGISTRY, error)
            return
        self._swap(served, time.perf_counter() - started)
        try:
            self.cache.point_to({"version": number, "run_id": served.run_id, "tags": tags})
        except OSError as error:
            log.warning(
                "could not record the model in the local cache", extra={"error": str(error)}
            )

    def _fetch(self, version: str) -> Path:
        """The model folder of `version` in the local cache, downloaded if not there."""
        if self.cache.has(version):
            return self.cache.folder(version)
        import mlflow.artifacts

        scratch = self.cache.scratch()
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{self.name}/{version}",
                dst_path=str(scratch),
                tracking_uri=self.settings.mlflow.tracking_uri,
                registry_uri=self.settings.mlflow.tracking_uri,
            )
            return self.cache.keep(scratch, version)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise

    def _load_cached(self) -> None:
        meta = self.cache.read()
        if meta is None:
            log.info("no model in the local cache", extra={"cache": str(self.cache.root)})
            self.last_load_error = f"no model in the local cache {self.cache.root}"
            return
        number = str(meta["version"])
        started = time.perf_counter()
        try:
            folder = self.cache.folder(number)
            tags, run_id = meta.get("tags", {}), meta.get("run_id", "")
            served = self._serve_from(folder, number, tags, run_id, FROM_CACHE)
        except Exception as error:
            self._load_failed(number, FROM_CACHE, error)
            return
        self._swap(served, time.perf_counter() - started)

    def _serve_from(self, folder: Path, version: str, tags: dict, run_id: str, source: str):
        pipeline = load_pipeline(folder)
        return self._prepare(pipeline, version, tags, run_id, source, cache_dir=folder)

    def _prepare(
        self,
        pipeline,
        version: str,
        tags: dict,
        run_id: str,
        source: str,
        cache_dir: Path | None = None,
    ):
        """The pipeline ready to serve: predictor compiled (its ONNX file kept in
        `cache_dir`, the version's folder) and checked, warmed up."""
        examples = [schema.validate_record(EXAMPLE), schema.validate_record(EXAMPLE_2)]
        predictor, note = compile_predictor(
            pipeline, extra=examples, prefer=self.settings.serve.predictor, cache_dir=cache_dir
        )
        predictor.classify_one(examples[0])  # warm up before the first request
        return ServedModel(
            name=self.name,
            alias=self.alias,
            version=version,
            run_id=run_id,
            tags=tags,
            source=source,
            loaded_at=now(),
            predictor=predictor,
            predictor_note=note,
            answers=Answers(version),
            budget_us=self.settings.serve.budget_us,
        )

    def _swap(self, served: ServedModel, seconds: float) -> None:
        previous = self.current
        self.current = served  # the swap: one reference, read once per request
        self.last_load_error = None
        log.info(
            "model swapped in" if previous else "model loaded",
            extra={
                "model": served.uri,
                "alias": self.alias,
                "previous_version": previous.version if previous else None,
                "source": served.source,
                "predictor": served.predictor.kind,
                "predictor_note": served.predictor_note,
                "load_seconds": round(seconds, 3),
            },
        )
        self.observer.model_loaded(served.source, True, seconds)
        self.observer.model_served(served, swapped=previous is not None)
        del previous
        freeze_heap()

    def _load_failed(self, version: str, source: str, error: Exception) -> None:
        self.last_load_error = f"loading version {version} failed: {_short(error)}"
        log.error(
            "model load failed; keeping the model in memory",
            exc_info=not isinstance(error, ModelLoadError | RegistryUnreachable),
            extra={
                "model": f"models:/{self.name}/{version}",
                "source": source,
                "serving_version": self.current.version if self.current else None,
                "error": _short(error),
            },
        )
        self.observer.model_loaded(source, False)

    # ------------------------------------------------------------ helpers

    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            self._client = registry_client(self.settings)
        return self._client

    def serving(self) -> ServedModel:
        """The model answering now; ModelNotReady saying why there is none."""
        served = self.current
        if served is None:
            retry = {"Retry-After": str(math.ceil(self.interval))}
            raise ModelNotReady(self.not_ready_reason(), headers=retry)
        return served

    def not_ready_reason(self) -> str:
        state = self.registry
        if state.reachable is False:
            why = f"the registry {state.uri} is unreachable ({state.last_error})"
            if self.last_load_error:
                why += f"; {self.last_load_error}"
        elif self.last_load_error:
            why = self.last_load_error
        elif not self.watch:
            why = "no model was given and the registry is not watched"
        else:
            why = "the first check of the registry has not finished"
        return (
            f"no model loaded yet for {self.target}: {why}; "
            f"the API checks again every {self.interval:g} s"
        )


def _short(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
