"""MkDocs hook: Mermaid served by the site itself, so no page asks a CDN for it.

Material for MkDocs renders ```mermaid blocks with the global `mermaid` when a page has
one, and otherwise loads it from unpkg.com. Mermaid's browser bundle (3.5 MB) is over the
repository's 2 MiB limit per file, so it is not tracked: the first build fetches the npm
package once with `npm pack` (the npm registry, npm's own client), checks it against the
integrity npm published, and keeps the bundle and its licence in `.cache/docs/` (git-ignored).
Every build then adds them to the site and to `extra_javascript`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

# The major version Material's bundle expects (it would load mermaid@11 itself).
VERSION = "11.17.2"
INTEGRITY = (  # `npm view mermaid@11.17.2 dist.integrity`
    "sha512-V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhMRD9qf4oEK7LoaRQxULMa80/qt5gH"
    "O73aCleBBg=="
)
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "docs" / f"mermaid-{VERSION}"
# Inside the npm package -> inside the site.
FILES = {
    "package/dist/mermaid.min.js": "assets/javascripts/mermaid.min.js",
    "package/LICENSE": "assets/javascripts/mermaid.LICENSE.txt",
}


def cached() -> dict[str, Path]:
    """The bundle and its licence in the cache, fetched first when missing."""
    paths = {site: CACHE / Path(site).name for site in FILES.values()}
    if not all(path.exists() for path in paths.values()):
        _fetch(paths)
    return paths


def _fetch(paths: dict[str, Path]) -> None:
    npm = shutil.which("npm")
    where = f"{paths[FILES['package/dist/mermaid.min.js']]}"
    if npm is None:
        raise PluginError(
            f"the docs serve Mermaid {VERSION} themselves and fetch it once with npm, which is "
            f"not on PATH: install Node.js and npm (Debian: apt-get install npm), or put "
            f"mermaid.min.js and LICENSE of mermaid@{VERSION} in {CACHE}"
        )
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [npm, "pack", f"mermaid@{VERSION}", "--pack-destination", folder, "--silent"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        tarballs = list(Path(folder).glob("mermaid-*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise PluginError(
                f"`npm pack mermaid@{VERSION}` failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-500:]}; the docs need {where}"
            )
        data = tarballs[0].read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise PluginError(f"mermaid@{VERSION} from npm is not the package pinned in {__file__}")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as package:
        for member, site in FILES.items():
            extracted = package.extractfile(member)
            if extracted is None:
                raise PluginError(f"mermaid@{VERSION} has no {member}")
            target = paths[site]
            partial = target.with_name(f"{target.name}.{os.getpid()}.part")
            partial.write_bytes(extracted.read())
            partial.replace(target)  # a concurrent build sees the whole file or none


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    cached()
    config.extra_javascript.append(FILES["package/dist/mermaid.min.js"])
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for site, path in cached().items():
        files.append(File.generated(config, site, abs_src_path=str(path)))
    return files
