"""The served model: loaded once, kept in memory, swapped when the alias moves.

`ModelHolder.current` is the one reference requests read, once per request, so an answer
carries the version that computed it. A watcher thread asks the registry every
COVERTYPE_SERVE_WATCH_SECONDS where `models:/{name}@{alias}` points; when it moved, the new
version is loaded beside the old one (download, load, compile the fast path and check it
against the pipeline, warm up) and only then replaces the reference, so no request waits
on a load or sees half a model. A registry that does not answer is logged and asked again
next time; the model in memory keeps serving.

The last loaded version is kept in COVERTYPE_SERVE_MODEL_CACHE (model files and a pointer
with its metadata), so a restart while the registry is unreachable still serves.
Models are unpacked with skops trusting only `train.TRUSTED_TYPES`, whatever the stored files claim.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from covertype import schema
from covertype.serve.fast import Predictor, compile_predictor
from covertype.serve.records import EXAMPLE, EXAMPLE_2
from covertype.settings import Settings

log = logging.getLogger(__name__)

FROM_REGISTRY = "registry"
FROM_CACHE = "local cache"
# Error codes with which a reachable registry says "no such model / alias".
NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


class Observer(Protocol):
    """What the holder reports (the API's metrics)."""

    def model_served(self, name: str, alias: str, version: str, swapped: bool) -> None: ...

    def model_loaded(self, source: str, ok: bool, seconds: float | None = None) -> None: ...

    def registry_checked(self, reachable: bool) -> None: ...


class ModelLoadError(RuntimeError):
    """A model version that cannot be served (format, files, or it fails its check)."""


class RegistryUnreachable(RuntimeError):
    """The registry did not answer (connection refused, timeout, 5xx)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ServedModel:
    name: str
    alias: str
    version: str
    run_id: str
    tags: dict[str, str]
    source: str  # FROM_REGISTRY or FROM_CACHE
    loaded_at: str
    predictor: Predictor
    fast_path_note: str | None  # why the pipeline serves instead of the fast path
    answers: dict[int, bytes] = field(repr=False)  # the JSON answer for each class

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def summary(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "loaded_at": self.loaded_at,
            "source": self.source,
        }

    def info(self) -> dict:
        tags = self.tags

        def number(key: str) -> float | None:
            try:
                return float(tags[key])
            except (KeyError, ValueError):
                return None

        rows = number("trained_rows")
        return self.summary() | {
            "run_id": self.run_id or tags.get("run_id", ""),
            "family": tags.get("family"),
            "metrics": {
                "holdout_accuracy": number("holdout_accuracy"),
                "holdout_macro_f1": number("holdout_macro_f1"),
            },
            "trained_rows": None if rows is None else int(rows),
            "trained_batches": tags.get("trained_batches"),
            "trained_at": tags.get("trained_at"),
            "gate_decision": tags.get("gate.decision"),
            "predictor": self.predictor.kind,
            "fast_path_note": self.fast_path_note,
        }


def answers_for(version: str) -> dict[int, bytes]:
    """The /predict answer for each class, encoded once per loaded version."""
    return {
        k: json.dumps(
            {"cover_type": k, "cover_type_name": name, "model_version": version},
            separators=(",", ":"),
        ).encode()
        for k, name in enumerate(schema.COVER_TYPE_NAMES)
    }


@dataclass
class RegistryState:
    uri: str
    reachable: bool | None = None  # None: not asked yet
    champion_version: str | None = None  # where the alias pointed at the last answer
    last_checked: str | None = None
    last_error: str | None = None
    failures: int = 0  # consecutive checks without an answer

    def as_dict(self) -> dict:
        return {
            "uri": self.uri,
            "reachable": self.reachable,
            "champion_version": self.champion_version,
            "last_checked": self.last_checked,
            "last_error": self.last_error,
        }


# ---------------------------------------------------------------- the model files


def load_pipeline(model_dir: Path):
    """The sklearn pipeline of an MLflow model folder, via skops with our trusted types."""
    import skops.io
    from mlflow.models import Model

    from covertype.train import TRUSTED_TYPES, for_serving

    trusted = sorted(TRUSTED_TYPES)  # what skops may instantiate: training's list, no more

    try:
        flavor = Model.load(str(model_dir / "MLmodel")).flavors["sklearn"]
    except (OSError, KeyError) as error:
        raise ModelLoadError(f"{model_dir} is not an MLflow sklearn model: {error}") from None
    if flavor.get("serialization_format") != "skops":
        raise ModelLoadError(
            f"model is saved as {flavor.get('serialization_format')!r}; the API loads only "
            "skops files (pickle would run whatever the file says)"
        )
    try:
        pipeline = skops.io.load(model_dir / flavor["pickled_model"], trusted=trusted)
    except Exception as error:
        raise ModelLoadError(f"cannot load {model_dir}: {type(error).__name__}: {error}") from None
    for_serving(pipeline)
    return pipeline


class ModelCache:
    """Model folders under `root/<name>/v<version>`, and a pointer `root/<name>@<alias>.json`
    to the one last served. Written by rename, so a reader never sees half a folder."""

    def __init__(self, root: Path, name: str, alias: str, tracking_uri: str):
        self.root, self.name, self.alias, self.tracking_uri = root, name, alias, tracking_uri
        self.models = root / _safe(name)
        self.pointer = root / f"{_safe(name)}@{_safe(alias)}.json"

    def folder(self, version: str) -> Path:
        return self.models / f"v{_safe(version)}"

    def has(self, version: str) -> bool:
        return (self.folder(version) / "MLmodel").is_file()

    def scratch(self) -> Path:
        path = self.root / ".incoming" / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def drop_stale_downloads(self, older_than: float = 3600) -> None:
        """Downloads a killed process left half done (not another worker's current one)."""
        for path in (self.root / ".incoming").glob("*"):
            try:
                if time.time() - path.stat().st_mtime > older_than:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue

    def keep(self, downloaded: Path, version: str) -> Path:
        """Move a downloaded model folder into place (another worker may have won)."""
        target = self.folder(version)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(downloaded, target)
        except OSError:
            if not self.has(version):
                raise
            shutil.rmtree(downloaded, ignore_errors=True)
        return target

    def read(self) -> dict | None:
        try:
            meta = json.loads(self.pointer.read_text())
            version = str(meta["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if meta.get("tracking_uri") != self.tracking_uri or not self.has(version):
            return None
        return meta

    def point_to(self, meta: dict) -> None:
        """Record the version being served and drop the folders no pointer names."""
        tmp = self.pointer.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(meta | {"tracking_uri": self.tracking_uri}))
        os.replace(tmp, self.pointer)
        named = {f"v{_safe(str(meta['version']))}"}
        for pointer in self.root.glob(f"{_safe(self.name)}@*.json"):
            try:
                named.add(f"v{_safe(str(json.loads(pointer.read_text())['version']))}")
            except (OSError, ValueError, KeyError):
                continue
        for folder in self.models.glob("v*"):
            if folder.name not in named:
                shutil.rmtree(folder, ignore_errors=True)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


# ---------------------------------------------------------------- the holder


class ModelHolder:
    """The model being served, and the watcher that replaces it when the alias moves."""

    def __init__(self, settings: Settings, observer: Observer | None = None):
        self.settings = settings
        self.name, self.alias = settings.model_name, settings.model_alias
        self.interval = settings.serve_watch_seconds
        self.observer = observer
        self.current: ServedModel | None = None
        self.registry = RegistryState(settings.mlflow_tracking_uri)
        self.last_load_error: str | None = None
        self.cache = ModelCache(
            settings.serve_model_cache_dir, self.name, self.alias, settings.mlflow_tracking_uri
        )
        # MLflow's client reads these per call. No retries of its own (they back off for
        # seconds, and the lock is held meanwhile): the watcher asks again next interval.
        timeout = math.ceil(settings.serve_registry_timeout_seconds)
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout)
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        self._client = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one load at a time (start-up and watcher)

    @property
    def target(self) -> str:
        return f"models:/{self.name}@{self.alias}"

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """First load (registry, else the local cache), then the watcher thread."""
        self.cache.drop_stale_downloads()
        try:
            self.check()
        except Exception:
            log.exception("first model check failed", extra={"model": self.target})
        if self.current is None and self.registry.reachable is False:
            self._load_cached()
        self._thread = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
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
                return
            self._load(version)

    def _champion(self):
        """The ModelVersion the alias points at, None if there is none (both: registry up)."""
        from mlflow.exceptions import MlflowException

        try:
            version = self._mlflow().get_model_version_by_alias(self.name, self.alias)
        except MlflowException as error:
            if error.error_code not in NOT_FOUND_CODES:
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
        state.reachable, state.champion_version, state.last_checked = True, version, _now()
        state.last_error, state.failures = None, 0
        self._observe("registry_checked", True)

    def _registry_down(self, error: str) -> None:
        state = self.registry
        state.reachable, state.last_checked, state.last_error = False, _now(), error
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
        self._observe("registry_checked", False)

    # ------------------------------------------------------------ loading and swapping

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
                tracking_uri=self.settings.mlflow_tracking_uri,
                registry_uri=self.settings.mlflow_tracking_uri,
            )
            return self.cache.keep(scratch, version)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise

    def _load_cached(self) -> None:
        meta = self.cache.read()
        if meta is None:
            log.warning(
                "registry unreachable and no model in the local cache; not ready",
                extra={"model": self.target, "cache": str(self.cache.root)},
            )
            self.last_load_error = "no model in the local cache " + str(self.cache.root)
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
        examples = [schema.validate_record(EXAMPLE), schema.validate_record(EXAMPLE_2)]
        predictor, note = compile_predictor(pipeline, extra=examples)
        predictor.predict_one(examples[0])  # warm up before the first request
        return ServedModel(
            name=self.name,
            alias=self.alias,
            version=version,
            run_id=run_id,
            tags=tags,
            source=source,
            loaded_at=_now(),
            predictor=predictor,
            fast_path_note=note,
            answers=answers_for(version),
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
                "fast_path_note": served.fast_path_note,
                "load_seconds": round(seconds, 3),
            },
        )
        self._observe("model_loaded", served.source, True, seconds)
        self._observe("model_served", self.name, self.alias, served.version, previous is not None)

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
        self._observe("model_loaded", source, False)

    # ------------------------------------------------------------ helpers

    def _mlflow(self):
        if self._client is None:
            import mlflow

            uri = self.settings.mlflow_tracking_uri
            # models:/ downloads resolve the version through MLflow's global registry URI
            # (whatever is passed), whose default is a local SQLite file, not the server.
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            self._client = mlflow.MlflowClient(uri, registry_uri=uri)
        return self._client

    def _observe(self, event: str, *args) -> None:
        if self.observer is not None:
            method: Callable = getattr(self.observer, event)
            method(*args)

    def not_ready_reason(self) -> str:
        state = self.registry
        if state.reachable is False:
            why = f"the registry {state.uri} is unreachable ({state.last_error})"
            if self.last_load_error:
                why += f"; {self.last_load_error}"
        elif self.last_load_error:
            why = self.last_load_error
        else:
            why = "the first check of the registry has not finished"
        return (
            f"no model loaded yet for {self.target}: {why}; "
            f"the API checks again every {self.interval:g} s"
        )


def _short(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
