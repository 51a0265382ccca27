"""The on-disk copy of the served model (COVERTYPE_SERVE_MODEL_CACHE), so that a restart
while the registry is unreachable still serves the last loaded version."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path


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

    def forget(self) -> None:
        """No version served under this alias any more: its folder is dropped at the next
        `point_to` of another alias (unless that one names it)."""
        self.pointer.unlink(missing_ok=True)

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
