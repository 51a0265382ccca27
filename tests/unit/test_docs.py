"""The documentation as a reader meets it: a short README that opens with the two commands,
a site whose every page is in the navigation, links that stay in the repository (or go to
public https sites), and reference pages generated from the code that list exactly what the
code has. The site's build and what a browser shows: tests/integration/test_docs.py."""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import re
from functools import cache
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest
import yaml

from covertype import schema
from covertype.settings import variables
from tests.support.environment import REPO

DOCS = REPO / "docs"
README = REPO / "README.md"
ROOT_PAGES = [README, REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md"]
README_LIMIT = 8192
TWO_COMMANDS = ("./scripts/run.sh", "./scripts/test.sh")


@cache
def reference() -> ModuleType:
    """docs/hooks/reference.py, the MkDocs hook that generates the reference pages."""
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "hooks/reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def generated(uri: str) -> str:
    pages = reference().REFERENCE | reference().GENERATED
    return pages[uri]()


def written_pages() -> list[Path]:
    """The Markdown files under docs/ (the hooks' folder is not part of the site)."""
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


def mkdocs_config() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml names a Python function for the Mermaid fence; a string is enough here.
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, tag, node: tag)
    return yaml.load((REPO / "mkdocs.yml").read_text(), Loader=Loader)


def nav_pages(entries: list) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


# ---------------------------------------------------------------- the README


def test_the_readme_is_at_most_8_kb_and_opens_with_the_two_commands():
    text = README.read_text()
    assert len(text.encode()) <= README_LIMIT, f"README.md is {len(text.encode())} bytes"
    first_block = re.search(r"^```\w*\n(.*?)^```", text, re.M | re.S)
    assert first_block, "README.md has no code block"
    assert first_block.start() < text.index("\n## "), "the commands come before any section"
    commands = [line.split("#")[0].strip() for line in first_block[1].splitlines()]
    assert commands == list(TWO_COMMANDS)


def test_the_readme_has_no_dated_log_and_links_into_the_docs():
    text = README.read_text()
    assert not re.search(r"since issue|fresh clone of this change|issue \d+", text, re.I)
    for page in ("docs/getting-started.md", "docs/benchmarks.md", "docs/reference/settings.md"):
        assert f"]({page}" in text, f"README.md does not link {page}"


# ---------------------------------------------------------------- the site's pages


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = mkdocs_config()
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is twice in the nav"
    pages = {p.relative_to(DOCS).as_posix() for p in written_pages()}
    pages |= set(reference().GENERATED)
    assert set(listed) == pages, {
        "not in the nav": pages - set(listed),
        "in the nav, no such page": set(listed) - pages,
    }


def test_every_generated_reference_page_has_its_placeholder_in_docs():
    for uri in reference().REFERENCE:
        assert (DOCS / uri).is_file(), f"docs/{uri} (its placeholder) is missing"
        assert generated(uri).startswith("# "), uri


def test_no_page_is_a_dated_log():
    for path in [*written_pages(), *ROOT_PAGES]:
        text = path.read_text()
        assert not re.search(r"since issue|issue \d+|fresh clone of this change", text, re.I), path


# ---------------------------------------------------------------- links


LINK = re.compile(
    r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<(https?://[^>\s]+)>|\b(?:href|src)=\"([^\"]+)\""
)


def links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)  # code is not a link
    text = re.sub(r"`[^`\n]*`", "", text)
    return [next(g for g in match.groups() if g) for match in LINK.finditer(text)]


def public_https(url: str) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or not host or host == "localhost" or "." not in host:
        return False
    if host.endswith((".local", ".internal", ".example", ".test", ".invalid")):
        return False
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        return True


@pytest.mark.parametrize(
    "path",
    [*written_pages(), *ROOT_PAGES],
    ids=lambda p: p.relative_to(REPO).as_posix(),
)
def test_links_stay_in_the_repository_or_go_to_public_https_sites(path):
    site_pages = set(reference().GENERATED)  # pages the build adds beside docs/
    for url in links(path):
        if urlsplit(url).scheme:
            assert public_https(url), f"{path.name}: {url} leaves the repository"
            continue
        target = url.split("#")[0]
        if not target:
            continue  # an anchor on the same page (the build checks it)
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{path.name}: {url} is outside the repository"
        in_site = resolved.is_relative_to(DOCS) and (
            resolved.relative_to(DOCS).as_posix() in site_pages
        )
        assert resolved.exists() or in_site, f"{path.name}: {url} does not exist"


def test_the_link_checks_catch_what_they_are_for():
    assert not public_https("http://example.org/")  # not https
    assert not public_https("https://127.0.0.1:8085/docs")
    assert not public_https("https://10.0.0.7/")
    assert not public_https("https://localhost/")
    assert public_https("https://keepachangelog.com/en/1.1.0/")
    assert (README.parent / "../shared/DESIGN.md").resolve().is_relative_to(REPO) is False


# ---------------------------------------------------------------- generated references


def test_the_settings_reference_lists_every_setting_once_and_nothing_else():
    documented = reference().documented_variables(generated("reference/settings.md"))
    assert documented == [v.env for v in variables()]


def test_the_settings_reference_gives_each_settings_type_default_and_description():
    rows = {row[0]: row for row in reference().settings_rows()}
    assert rows["COVERTYPE_SERVE_PORT"][2:4] == ("integer (1–65535)", "`8085`")
    assert rows["COVERTYPE_SOURCE_ORDER"][2].startswith("one of `random`, `elevation`")
    assert rows["COVERTYPE_API_KEYS"][2:4] == ("secret (text)", "unset")
    for env, _, kind, default, description in rows.values():
        assert kind and default and description, f"{env} lacks a type, default or description"


def test_no_page_names_a_variable_that_does_not_exist():
    """A variable a page names is a setting, or is set where the page says (compose, the
    deployment files, the scripts, the tests' or benchmarks' own)."""
    settings = {v.env for v in variables()}
    elsewhere = "\n".join(
        p.read_text(errors="ignore")
        for pattern in (
            "docker-compose*.yaml", ".env.example", "deploy/**/*", "scripts/*", ".ci/*",
            "src/**/*.py", "tests/support/*.py", "benchmarks/*.py",
        )
        for p in REPO.glob(pattern)
        if p.is_file()
    )  # fmt: skip
    named = re.compile(
        r"\b(?:COVERTYPE|MLFLOW|AWS|MYSQL|MINIO|GRAFANA|POSTGRES)_[A-Z0-9_]*[A-Z0-9]\b"
    )
    for path in [*written_pages(), *ROOT_PAGES]:
        for name in set(named.findall(path.read_text())):
            known = name in settings or re.search(rf"\b{name}\b", elsewhere)
            assert known, f"{path.relative_to(REPO)} names {name}, which nothing sets"


def test_the_cli_reference_has_a_section_for_every_command():
    import typer

    from covertype.cli import app

    page = generated("reference/cli.md")
    root = typer.main.get_command(app)
    context = typer.Context(root, info_name="covertype")
    for name in root.list_commands(context):
        assert f"## `covertype {name}` {{#covertype-{name}}}" in page, name
    for name in ("upgrade", "current", "history"):
        assert f"### `covertype db {name}`" in page
    assert "`-u, --users <int>`" in page and "[default: 10]" in page


@pytest.mark.parametrize("uri", ["reference/inference-api.md", "reference/source-api.md"])
def test_the_api_references_have_every_route_of_the_openapi_schema(uri):
    spec = reference().inference_api_spec() if "inference" in uri else reference().source_api_spec()
    page = generated(uri)
    for path, methods in spec["paths"].items():
        for method in methods:
            assert f"### `{method.upper()} {path}`" in page, f"{method} {path}"
    for name in spec.get("components", {}).get("schemas", {}):
        assert f"### {name} {{#schema-{name.lower()}}}" in page, name


def test_the_inference_api_reference_says_which_routes_need_a_key():
    page = generated("reference/inference-api.md")
    rows = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| [`")}
    assert rows["| [`GET /health`](#get-health)"].endswith("| open |")
    assert rows["| [`POST /predict`](#post-predict)"].endswith("| key |")
    section = page.split("### `POST /predict` {#post-predict}")[1].split("\n### ")[0]
    assert "Key: required: header `X-API-Key: <key>` or header `Authorization: Bearer" in section


def test_the_record_reference_has_every_field_value_and_spelling():
    page = generated("reference/record.md")
    for name in schema.FIELDS:
        assert f"`{name}`" in page
    for value in (*schema.WILDERNESS_AREAS, *schema.SOIL_TYPES, *schema.COVER_TYPE_NAMES):
        assert value in page
    for field in schema.NUMERIC_FIELDS:
        assert f"| {field.low} – {field.high} |" in page, field.name
    assert "| `'comanche peak'` | `'Commanche'` |" not in page  # spellings shown as typed
    assert "| `comanche peak` | `Commanche` |" in page
    assert "`'Soil_Type29'` | `'C7745'`" in page  # check_value's answer, run at build time


# ---------------------------------------------------------------- benchmarks


def test_each_benchmark_has_its_dated_figures_and_how_to_rerun_it():
    page = (DOCS / "benchmarks.md").read_text()
    sections = re.split(r"^## ", page, flags=re.M)
    for script in sorted((REPO / "benchmarks").glob("bench_*.py")):
        rerun = f".venv/bin/python benchmarks/{script.name}"
        found = [s for s in sections if rerun in s]
        assert found, f"docs/benchmarks.md does not say how to rerun {script.name}"
        dated = re.search(r"\*\*20\d\d-\d\d-\d\d\*\*", found[0])
        assert dated, f"{script.name}: its figures do not say when they were measured"


# ---------------------------------------------------------------- code the pages name

PACKAGE = REPO / "src" / "covertype"
DOTTED = re.compile(r"\bcovertype(?:\.[a-z_][a-z0-9_]*)+\b")
# A whole code span naming a source file (`serve/heap.py`) or a folder of the package
# (`covertype/dags/`); other paths (deploy/k8s, the state folder's stack/services/...) are not.
SOURCE_PATH = re.compile(r"(?:covertype/)?((?:[a-z_]+/)*[a-z_0-9]+\.py)|covertype/([a-z_/]+)")


def resolves(name: str) -> bool:
    """`covertype.a.b.c`: a module, or an attribute of the longest module prefix."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            value: object = importlib.import_module(module) if cut < len(parts) else None
            for attribute in parts[cut:]:
                if not hasattr(value, attribute):
                    return False
                value = getattr(value, attribute)
            return True
    return False


def test_every_module_function_and_source_file_a_page_names_exists():
    """Renamed code fails here, not in a reader's hands: `covertype.x.y` must import (or be
    an attribute of what does), and a source path of the package must be a file or folder."""
    for path in [*written_pages(), *ROOT_PAGES]:
        text = path.read_text()
        for name in sorted(set(DOTTED.findall(text))):
            assert resolves(name), f"{path.relative_to(REPO)} names {name}, which does not exist"
        for code in re.findall(r"`([^`\n]+)`", text):
            match = SOURCE_PATH.fullmatch(code)
            if match is None:
                continue
            relative = match[1] or match[2]
            if not (PACKAGE / relative.split("/")[0]).exists():
                continue  # benchmarks/..., tests/..., deploy/...: not the package's
            target = PACKAGE / relative.rstrip("/")
            assert target.exists(), f"{path.relative_to(REPO)} names {relative}: not in src"
