"""The served models: loaded once, kept in memory, swapped when their alias moves.

One `ModelHolder` per alias: the champion's, which answers every request, and the
challenger's, which the shadow predictions use (`shadow`). `current` is the one reference
requests read, once per request, so an answer carries the version that computed it. A
watcher thread asks the registry (`alias_lookup`) every COVERTYPE_SERVE_WATCH_SECONDS where
`models:/{name}@{alias}` points; when it moved, the new version is loaded beside the old one
(download, load, compile the fast path and check it against the pipeline, warm up) and
only then replaces the reference, so no request waits on a load or sees half a model. A
registry that does not answer is logged and asked again next time; the model in memory
keeps serving.

The champion's last loaded version is kept in COVERTYPE_SERVE_MODEL_CACHE (model files and
a pointer with its metadata). A (re)start serves it at once, before the registry is asked,
so an API that crashed is back in seconds whether MLflow answers or not; the watcher's
first check swaps in whatever the alias points at now. The champion keeps serving when its
alias disappears; the challenger (`keep_when_gone=False`) is dropped from memory then, or
when it points at the version the champion serves (nothing to shadow), and is only ever
loaded by its watcher, off start-up. Models are unpacked with skops trusting only
`model_artifact.TRUSTED_TYPES`, whatever the stored files claim.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from pathlib import Path
from typing import Protocol

from covertype.errors import Unavailable
from covertype.serve.alias_lookup import AliasLookup, RegistryUnreachable, short
from covertype.serve.answers import Answers
from covertype.serve.heap import freeze_heap
from covertype.serve.model_cache import ModelCache
from covertype.serve.model_files import ModelLoadError, load_pipeline
from covertype.serve.predictor_choice import ready_predictor
from covertype.serve.served_model import RegistryState, ServedModel, now
from covertype.settings import Settings

log = logging.getLogger(__name__)

FROM_REGISTRY = "registry"
FROM_CACHE = "local cache"
FROM_MEMORY = "memory"  # a pipeline handed to `serve_pipeline` (tests)


class Observer(Protocol):
    """What the holder reports (the API's metrics)."""

    def model_served(self, served: ServedModel, swapped: bool) -> None: ...

    def model_loaded(self, source: str, ok: bool, seconds: float | None = None) -> None: ...

    def model_dropped(self, served: ServedModel) -> None: ...

    def registry_checked(self, reachable: bool) -> None: ...


class NoObserver:
    """An observer that ignores everything: a holder without metrics."""

    def model_served(self, served: ServedModel, swapped: bool) -> None:
        pass

    def model_loaded(self, source: str, ok: bool, seconds: float | None = None) -> None:
        pass

    def model_dropped(self, served: ServedModel) -> None:
        pass

    def registry_checked(self, reachable: bool) -> None:
        pass


class ModelNotReady(Unavailable):
    """No model is loaded yet (HTTP 503, with when to ask again)."""


class ModelHolder:
    """The model of one alias, and the watcher that replaces it when the alias moves.
    `watch=False`: the registry is never asked (no MLflow, no thread); models come only
    through `serve_pipeline`. `alias`: the champion's (settings.mlflow.model_alias) unless
    given. `keep_when_gone=False` (the challenger): dropped when the alias disappears, or
    points at the version `beside` (the champion's holder) serves."""

    def __init__(
        self,
        settings: Settings,
        observer: Observer | None = None,
        watch: bool = True,
        alias: str | None = None,
        keep_when_gone: bool = True,
        beside: ModelHolder | None = None,
    ):
        self.settings = settings
        self.name, self.alias = settings.mlflow.model_name, alias or settings.mlflow.model_alias
        self.keep_when_gone, self.beside = keep_when_gone, beside
        self.noun = "model" if keep_when_gone else "challenger"  # in its log lines
        self.interval = settings.serve.watch_seconds
        self.observer: Observer = observer or NoObserver()
        self.watch = watch
        self.current: ServedModel | None = None
        self.lookup = AliasLookup(settings, self.alias, self.observer)
        self.last_load_error: str | None = None
        self.cache = ModelCache(
            settings.serve.model_cache_dir, self.name, self.alias, settings.mlflow.tracking_uri
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one load at a time (start-up, watcher, serve_pipeline)
        self._retry: tuple[str, int, float] | None = None  # version, failures, next attempt

    @property
    def target(self) -> str:
        return self.lookup.target

    @property
    def registry(self) -> RegistryState:
        return self.lookup.state

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """The champion: the last served version from the local cache at once, then the
        registry: asked here when nothing was cached, else by the watcher thread right away.
        A restart after a crash serves within seconds, MLflow up or not, and MLflow's client
        (seconds to import) is not on that path; a version the alias left meanwhile is
        swapped at the watcher's first check. The challenger: its watcher's first check,
        right away, in the background."""
        if not self.watch:
            return
        self.cache.drop_stale_downloads()
        if self.keep_when_gone:
            self._load_cached()
            if self.current is None:
                try:
                    self.check()
                except Exception:
                    log.exception("first model check failed", extra={"model": self.target})
        check_now = self.current is not None or not self.keep_when_gone
        self._thread = threading.Thread(
            target=self._watch, args=(check_now,), name=f"{self.noun}-watcher", daemon=True
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
                log.exception(f"{self.noun} watcher check failed", extra={"model": self.target})

    # ------------------------------------------------------------ one check

    def check(self) -> None:
        """Ask where the alias points; load and swap when it moved (or drop the challenger)."""
        with self._lock:
            try:
                version = self.lookup.points_to()
            except RegistryUnreachable as error:
                # The challenger's outage is the champion's too: logged once, as a warning.
                level = logging.WARNING if self.keep_when_gone else logging.INFO
                serving = self.current.version if self.current else None
                self.lookup.unreachable(str(error), serving, level)
                return
            if version is None:
                self._alias_missing()
                return
            number = str(version.version)
            champion = self.beside.current if self.beside is not None else None
            if champion is not None and champion.version == number:  # e.g. just promoted
                self._drop(f"it points at the version the {champion.alias} serves")
                return
            if self.current is not None and self.current.version == number:
                self._retag(dict(version.tags))
                return
            if self._waiting(number):
                return
            self._load(version)

    def _waiting(self, version: str) -> bool:
        """The challenger does not retry a version that failed to load at every check (a
        load costs the champion's requests seconds of CPU): after 1, 2, 4... intervals, at
        most 10 minutes apart."""
        retry = self._retry
        return retry is not None and retry[0] == version and time.monotonic() < retry[2]

    def _alias_missing(self) -> None:
        if not self.keep_when_gone:
            self._drop("the alias was removed")
        elif self.current is None:
            error = self.lookup.missing
            self.last_load_error = f"the registry has no {self.target}: {error}"
            log.info("no champion yet", extra={"model": self.target, "error": error})

    def _retag(self, tags: dict[str, str]) -> None:
        """The served version's tags as the registry has them now (a reproduction tags a
        version after it was loaded): the same model, the latest description."""
        current = self.current
        if current is not None and current.tags != tags:
            self.current = dataclasses.replace(current, tags=tags)

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

    def drop(self, reason: str) -> None:
        """No model of this alias in memory any more (the challenger retired or promoted)."""
        with self._lock:
            self._drop(reason)

    def _load(self, version) -> None:
        number = str(version.version)
        tags, run_id = dict(version.tags), version.run_id or ""
        meta = {"version": number, "run_id": run_id, "tags": tags}
        started = time.perf_counter()
        try:
            if not self.keep_when_gone:  # named first: the champion's cache clean-up spares it
                self.cache.point_to(meta)
            folder = self.lookup.fetch(number, self.cache)
            served = self._serve_from(folder, number, tags, run_id, FROM_REGISTRY)
        except Exception as error:
            self._load_failed(number, FROM_REGISTRY, error)
            return
        self._swap(served, time.perf_counter() - started)
        if not self.keep_when_gone:
            return
        try:
            self.cache.point_to(meta)
        except OSError as error:
            log.warning(
                "could not record the model in the local cache", extra={"error": str(error)}
            )

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
        predictor, note = ready_predictor(pipeline, self.settings.serve.predictor, cache_dir)
        return self._served(predictor, note, version, tags, run_id, source)

    def _served(self, predictor, note, version, tags, run_id, source) -> ServedModel:
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
        self.last_load_error, self._retry = None, None
        log.info(
            f"{self.noun} swapped in" if previous else f"{self.noun} loaded",
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

    def _drop(self, reason: str) -> None:
        dropped = self.current
        if dropped is None:
            return
        self.current = None
        self.cache.forget()
        log.info(
            f"{self.noun} dropped",
            extra={"model": dropped.uri, "alias": self.alias, "reason": reason},
        )
        self.observer.model_dropped(dropped)
        del dropped
        freeze_heap()  # its frozen cycles freed

    def _load_failed(self, version: str, source: str, error: Exception) -> None:
        self.last_load_error = f"loading version {version} failed: {short(error)}"
        if not self.keep_when_gone:
            retry = self._retry
            failures = retry[1] + 1 if retry is not None and retry[0] == version else 1
            wait = min(self.interval * 2 ** (failures - 1), 600.0)
            self._retry = (version, failures, time.monotonic() + wait)
        log.error(
            f"{self.noun} load failed; keeping the model in memory",
            exc_info=not isinstance(error, ModelLoadError | RegistryUnreachable),
            extra={
                "model": f"models:/{self.name}/{version}",
                "alias": self.alias,
                "source": source,
                "serving_version": self.current.version if self.current else None,
                "error": short(error),
            },
        )
        self.observer.model_loaded(source, False)

    # ------------------------------------------------------------ what the routes ask

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
