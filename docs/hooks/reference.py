"""MkDocs hook: the reference pages, generated from the code at every build.

- `reference/cli.md` from the Typer app `covertype.cli.app` (each command's help, usage,
  arguments and options);
- `reference/settings.md` from `covertype.settings.variables()` (every field of every group:
  its environment variable, type, default and description) and the local stack's own
  defaults (`covertype.stack.services.LOCAL` and `FAST`);
- `reference/inference-api.md` and `reference/source-api.md` from the apps' OpenAPI schemas
  (`covertype.serve.create_app(settings, watch=False)`, `covertype.source.create_app`);
- `reference/record.md` from `covertype.schema` (fields, ranges, vocabularies, spellings);
- `changelog.md` and `contributing.md`: CHANGELOG.md and CONTRIBUTING.md of the repository.

Nothing generated is written to docs/: it holds a stub of each reference page (so a link to
one works in a clone too), whose text the build replaces; the root files' pages exist only in
the build. The functions return Markdown and are what tests/unit/test_docs.py checks.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

REPO = Path(__file__).resolve().parents[2]
GENERATED_NOTE = (
    '!!! info "Generated"\n    Generated at every build of the docs from {source}; '
    "edit the code, not this page.\n"
)


def note(source: str) -> str:
    return GENERATED_NOTE.format(source=source)


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


# ---------------------------------------------------------------- settings


def _field_info(path: str) -> Any:
    from covertype.settings import Settings

    model: Any = Settings
    *groups, name = path.split(".")
    for group in groups:
        model = model.model_fields[group].annotation
    return model.model_fields[name]


def type_text(annotation: Any) -> str:
    """A setting's type as a reader of the environment sees it."""
    from pydantic import SecretStr

    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(annotation))
    if args and type(None) in get_args(annotation):  # X | None
        return type_text(args[0]) if len(args) == 1 else " or ".join(map(type_text, args))
    names = {str: "text", int: "integer", float: "number", bool: "boolean", Path: "path"}
    if annotation is SecretStr:
        return "secret (text)"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def constraint_text(info: Any) -> str:
    bounds = {}
    for item in info.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(item, key, None) is not None:
                bounds[key] = getattr(item, key)
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}–{bounds['le']}"
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    return ", ".join(f"{signs[k]} {v}" for k, v in bounds.items())


def default_text(default: Any) -> str:
    if default is None:
        return "unset"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def settings_rows() -> list[tuple[str, str, str, str, str]]:
    """(variable, path, type, default, description) of every setting, in `variables()` order."""
    from covertype.settings import variables

    rows = []
    for variable in variables():
        kind = type_text(variable.annotation)
        limits = constraint_text(_field_info(variable.path))
        rows.append(
            (
                variable.env,
                variable.path,
                f"{kind} ({limits})" if limits else kind,
                default_text(variable.default),
                variable.description,
            )
        )
    return rows


VARIABLE_ROW = re.compile(r'^\| <span id="([A-Za-z0-9_]+)"></span>', re.M)


def documented_variables(page: str) -> list[str]:
    """The variables a settings page has a row for, in its order."""
    return VARIABLE_ROW.findall(page)


def _invalid_example() -> str:
    """What `Settings` says about a bad value, as a user sees it (asked at build time)."""
    from covertype.settings import Settings, SettingsError

    try:
        Settings.from_env({"COVERTYPE_SERVE_PORT": "eighty"})
    except SettingsError as error:
        return str(error)
    raise AssertionError("COVERTYPE_SERVE_PORT=eighty was accepted")


def settings_page() -> str:
    from covertype.settings import Settings
    from covertype.stack.services import FAST, LOCAL

    rows = settings_rows()
    groups: dict[str, list[tuple[str, ...]]] = {}
    for row in rows:
        group, _, _ = row[1].rpartition(".")
        groups.setdefault(group, []).append(row)
    out = [
        "# Settings",
        "",
        note("`covertype.settings.variables()`: every field of `Settings` and its groups"),
        "Every URL, port, path and secret of the platform is a setting, read from the "
        "environment and then from a `.env` file in the working directory (the environment "
        "wins; names are case-insensitive). `.env.example` lists every variable with a "
        "placeholder; `.env` is git-ignored. Code reads a setting by its path "
        f"(`settings.serve.port`) through one object, `Settings`. {len(rows)} settings in "
        f"{len(groups)} groups; a secret's value is never printed (errors show `<hidden>`).",
        "",
        "A setting that does not validate stops every command with one line naming the "
        f"variable and what is wrong, e.g. `{_invalid_example()}`.",
        "",
    ]
    for group, members in groups.items():
        if group:
            model = Settings.model_fields[group].annotation
            module = sys.modules[model.__module__]
            title, intro = f"`{group}`", first_paragraph(module.__doc__)
        else:
            title, intro = "General", "Where the local state and the data DB are."
        out += [f"## {title}", "", intro, ""]
        out.append(
            table(
                ("Variable", "Type", "Default", "Description"),
                (
                    (f'<span id="{env}"></span>`{env}`', kind, default, text)
                    for env, _, kind, default, text in members
                ),
            )
        )
    out += [
        "## The local stack's own defaults",
        "",
        "`covertype up` starts every service with these where the environment (or `.env`) "
        "sets nothing (`covertype.stack.services.LOCAL`):",
        "",
        table(("Variable", "Value"), ((f"`{k}`", f"`{v}`") for k, v in LOCAL.items())),
        "`covertype up --fast` (what `./scripts/run.sh` runs) adds, again unless set "
        "(`covertype.stack.services.FAST`):",
        "",
        table(("Variable", "Value"), ((f"`{k}`", f"`{v}`") for k, v in FAST.items())),
        "It also sets `COVERTYPE_HOME` to an absolute path, derives `COVERTYPE_SOURCE_URL`, "
        "`MLFLOW_TRACKING_URI` and `COVERTYPE_API_URL` from the services' hosts and ports, and "
        "sets `COVERTYPE_UI_LINKS` and `COVERTYPE_PROMETHEUS_URL` to what it runs. With logins "
        "on it generates the missing secrets into `$COVERTYPE_HOME/secrets.env` "
        "([Logins and secrets](../guides/logins.md)).",
        "",
    ]
    return "\n".join(out)


# ---------------------------------------------------------------- CLI


def cli_page() -> str:
    import typer

    from covertype.cli import app

    root = typer.main.get_command(app)
    context = typer.Context(root, info_name="covertype")
    out = [
        "# Command line",
        "",
        note("the Typer app `covertype.cli.app`"),
        "One entry point, `covertype` (in `.venv/bin`), with a subcommand per stage. Every "
        "server subcommand takes `--host` and `--port`, defaulting from the "
        "[settings](settings.md). A command that meets a platform error prints "
        "`covertype <command>: <message>` on one line and exits with the error's code "
        "(2 for settings that cannot work).",
        "",
        "```text",
        root.get_usage(context),
        "```",
        "",
        first_paragraph(root.help),
        "",
        _options(root, context),
        table(
            ("Command", "What it does"),
            (
                (f"[`{name}`](#covertype-{name})", first_paragraph(command.help))
                for name, command in _subcommands(root, context)
            ),
        ),
    ]
    for name, command in _subcommands(root, context):
        out += _command(command, typer.Context(command, info_name=name, parent=context), 2)
    return "\n".join(out)


def _subcommands(group: Any, context: Any) -> list[tuple[str, Any]]:
    found = [(name, group.get_command(context, name)) for name in group.list_commands(context)]
    return [(name, command) for name, command in found if not command.hidden]


def _command(command: Any, context: Any, level: int) -> list[str]:
    import typer

    path = context.command_path
    anchor = path.replace(" ", "-")
    out = [f"{'#' * level} `{path}` {{#{anchor}}}", "", command.help or "", ""]
    out += ["```text", command.get_usage(context), "```", ""]
    if not command.add_help_option and context.ignore_unknown_options:
        out += ["Every argument after the command goes to it unchanged.", ""]
    out.append(_options(command, context))
    if hasattr(command, "list_commands"):
        for name, sub in _subcommands(command, context):
            out += _command(sub, typer.Context(sub, info_name=name, parent=context), level + 1)
    return out


def _options(command: Any, context: Any) -> str:
    rows = []
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is None or param.hidden:
            continue
        names, text = record
        rows.append((f"`{names}`", text))
    return table(("Argument or option", "Meaning"), rows) if rows else ""


# ---------------------------------------------------------------- OpenAPI


def inference_api_spec() -> dict:
    """The inference API's schema as it serves it with logins on (the default)."""
    from covertype.serve import create_app
    from covertype.settings import Settings

    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env(
            # A placeholder so the app builds with logins on; it never leaves this process.
            {"COVERTYPE_HOME": home, "COVERTYPE_API_KEYS": "placeholder-key-for-the-docs"}
        )
        return create_app(settings, watch=False).openapi()


def source_api_spec() -> dict:
    from covertype.settings import Settings
    from covertype.source import create_app

    with tempfile.TemporaryDirectory() as home:
        return create_app(Settings.from_env({"COVERTYPE_HOME": home})).openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def schema_text(schema: dict, anchors: bool = True) -> str:
    """A JSON schema as a short type: `integer (0–6)`, `array of Record`, ..."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#schema-{name.lower()})" if anchors else name
    if "anyOf" in schema:
        return " or ".join(schema_text(s, anchors) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        text = "array of " + schema_text(schema.get("items", {}), anchors)
    elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        text = "object of " + schema_text(schema["additionalProperties"], anchors)
    else:
        text = str(kind or "any")
    limits = []
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        limits.append(f"{_number(low)}–{_number(high)}")
    elif low is not None:
        limits.append(f"≥ {_number(low)}")
    elif high is not None:
        limits.append(f"≤ {_number(high)}")
    for key, word in (("minItems", "at least"), ("maxItems", "at most")):
        if key in schema:
            limits.append(f"{word} {schema[key]} items")
    for key, word in (("minLength", "at least"), ("maxLength", "at most")):
        if key in schema:
            limits.append(f"{word} {schema[key]} characters")
    if "default" in schema:
        limits.append(f"default `{json.dumps(schema['default'])}`")
    return f"{text} ({', '.join(limits)})" if limits else text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def openapi_page(spec: dict, title: str, source: str, intro: str) -> str:
    info = spec.get("info", {})
    out = [
        f"# {title}",
        "",
        note(source),
        intro,
        "",
        f"**{info.get('title', title)}** {info.get('version', '')}: {info.get('description', '')}",
        "",
    ]
    schemes = spec.get("components", {}).get("securitySchemes", {})
    if schemes:
        out += [
            "## Authentication",
            "",
            "Every endpoint marked *key* below takes a key in either of these; one marked "
            "*open* needs none.",
            "",
            table(("Scheme", "How"), ((n, _scheme_text(s)) for n, s in schemes.items())),
        ]
    operations = [
        (path, method.upper(), operation)
        for path, methods in spec.get("paths", {}).items()
        for method, operation in methods.items()
    ]
    out += [
        "## Endpoints",
        "",
        table(
            ("Endpoint", "Summary", "Key"),
            (
                (
                    f"[`{m} {p}`](#{_anchor(m, p)})",
                    o.get("summary", ""),
                    _security(o, schemes, True),
                )
                for p, m, o in operations
            ),
        ),
    ]
    for path, method, operation in operations:
        out += _operation(path, method, operation, schemes)
    components = spec.get("components", {}).get("schemas", {})
    if components:
        out += ["## Schemas", ""]
        for name, schema in components.items():
            out += _component(name, schema)
    return "\n".join(out)


def _anchor(method: str, path: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "root"
    return f"{method.lower()}-{slug}"


def _scheme_text(scheme: dict) -> str:
    if scheme.get("in") == "header":
        return f"header `{scheme['name']}: <key>`"
    if scheme.get("scheme") == "bearer":
        return "header `Authorization: Bearer <key>`"
    return str(scheme.get("type", ""))


def _security(operation: dict, schemes: dict, short: bool = False) -> str:
    required = operation.get("security")
    if not schemes or required == []:
        return "open"
    if short:
        return "key"
    names = sorted({name for item in required or [] for name in item})
    return "required: " + " or ".join(_scheme_text(schemes[n]) for n in names)


def _operation(path: str, method: str, operation: dict, schemes: dict) -> list[str]:
    out = [f"### `{method} {path}` {{#{_anchor(method, path)}}}", ""]
    out += [f"**{operation.get('summary', '')}**", ""]
    if operation.get("description"):
        out += [operation["description"], ""]
    if schemes:
        out += [f"Key: {_security(operation, schemes)}.", ""]
    parameters = operation.get("parameters", [])
    if parameters:
        out.append(
            table(
                ("Parameter", "In", "Type", "Required", "Description"),
                (
                    (
                        f"`{p['name']}`",
                        p.get("in", ""),
                        schema_text(p.get("schema", {})),
                        "yes" if p.get("required") else "no",
                        p.get("description", ""),
                    )
                    for p in parameters
                ),
            )
        )
    body = operation.get("requestBody")
    if body:
        for media, content in body.get("content", {}).items():
            out += [f"Request body (`{media}`): {schema_text(content.get('schema', {}))}.", ""]
            for example in content.get("examples", {}).values():
                out += [
                    f"Example: {example.get('summary', '')}",
                    "",
                    "```json",
                    json.dumps(example.get("value"), indent=2),
                    "```",
                    "",
                ]
    responses = []
    for status, response in operation.get("responses", {}).items():
        bodies = [
            f"{schema_text(c.get('schema', {}))} (`{media}`)"
            for media, c in response.get("content", {}).items()
        ]
        responses.append((status, response.get("description", ""), "; ".join(bodies) or "–"))
    out.append(table(("Status", "Meaning", "Body"), sorted(responses)))
    return out


def _component(name: str, schema: dict) -> list[str]:
    out = [f"### {name} {{#schema-{name.lower()}}}", ""]
    if schema.get("description"):
        out += [schema["description"], ""]
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    if not properties:
        out += [f"{schema_text(schema)}.", ""]
        return out
    rows = []
    for field, sub in properties.items():
        text = sub.get("description", "")
        examples = sub.get("examples")
        if examples:
            text = f"{text} Example: `{json.dumps(examples[0])}`".strip()
        rows.append((f"`{field}`", schema_text(sub), "yes" if field in required else "no", text))
    out.append(table(("Field", "Type", "Required", "Description"), rows))
    return out


def inference_api_page() -> str:
    return openapi_page(
        inference_api_spec(),
        "Inference API",
        "`covertype.serve.create_app(settings, watch=False).openapi()` with the default "
        "settings and logins on",
        "`covertype serve` (port 8085 by default). A running API serves the same schema at "
        "`/openapi.json` and an interactive page at `/docs`. With logins on (the default) "
        "every endpoint but `/health` and `/ready` needs a key from `COVERTYPE_API_KEYS`; "
        "`/metrics` opens only to the scraper's key, `COVERTYPE_METRICS_KEY` "
        "([Logins and secrets](../guides/logins.md)). How the model behind it is loaded and "
        "swapped: [Serving predictions](../guides/serving.md).",
    )


def source_api_page() -> str:
    return openapi_page(
        source_api_spec(),
        "Source API",
        "`covertype.source.create_app(settings).openapi()`",
        "`covertype source` (port 8087 by default): the course's data API. No login: it "
        "serves public data. Its behaviour (batches, windows, groups, the 400 answers) is "
        "described in [The data API](../guides/data-api.md); the record each row holds, in "
        "[The record](record.md).",
    )


# ---------------------------------------------------------------- the record


def record_page() -> str:
    from covertype import schema

    numeric = {f.name: f for f in schema.NUMERIC_FIELDS}
    rows = []
    for number, name in enumerate(schema.FIELDS, start=1):
        if name in numeric:
            field = numeric[name]
            rows.append((number, f"`{name}`", "integer", f"{field.low} – {field.high}", field.unit))
        elif name == schema.WILDERNESS:
            rows.append((number, f"`{name}`", "text", "a wilderness area (below)", ""))
        elif name == schema.SOIL:
            rows.append((number, f"`{name}`", "text", "a soil code (below)", ""))
        else:
            field = schema.LABEL_FIELD
            rows.append((number, f"`{name}`", "integer", f"{field.low} – {field.high}", field.unit))
    aliases = sorted(schema.WILDERNESS_SPELLINGS.items(), key=lambda item: (item[1], item[0]))
    examples = [
        (schema.WILDERNESS, "Comanche Peak"),
        (schema.WILDERNESS, "  cache LA poudre "),
        (schema.SOIL, "C7745"),
        (schema.SOIL, "7745"),
        (schema.SOIL, "29"),
        (schema.SOIL, "Soil_Type29"),
        ("Elevation", "2596"),
        ("Elevation", "2596.0"),
        ("Elevation", "2596.5"),
        ("Elevation", "999"),
        (schema.SOIL, "mud"),
    ]
    return "\n".join(
        [
            "# The record",
            "",
            note("`covertype.schema`"),
            "One forest cell: 12 features and its cover type, in this order. The source API "
            "serves each row as a list of 13 strings in this order (as the course's API does); "
            "the inference API takes the 12 features as a JSON object, by name. Every module "
            "takes the fields from `covertype.schema`; a value that breaks a rule is refused "
            "with a message naming the field and what is allowed (HTTP 422 at the API, "
            "`cover_type_quarantine` at ingest).",
            "",
            table(("#", "Field", "Type", "Valid values", "Unit"), rows),
            "## Wilderness areas",
            "",
            "UCI's `Wilderness_Area1..4`, in order:",
            "",
            table(
                ("UCI", "Canonical value"),
                ((i, f"`{a}`") for i, a in enumerate(schema.WILDERNESS_AREAS, start=1)),
            ),
            f"Accepted: {schema.WILDERNESS_ALLOWED}. Spaces are collapsed and case ignored; "
            "these spellings are read as:",
            "",
            table(("Spelling (any case)", "Read as"), ((f"`{k}`", f"`{v}`") for k, v in aliases)),
            "## Soil types",
            "",
            f"Accepted: {schema.SOIL_ALLOWED}. The canonical value is `C` and the ELU code of "
            "UCI's `Soil_Type1..40`, in order (a `Soil_Type` prefix and any case are accepted "
            "too):",
            "",
            table(
                ("UCI soil", "ELU code", "Canonical value"),
                (
                    (i, code, f"`{soil}`")
                    for i, (code, soil) in enumerate(
                        zip(schema.SOIL_ELU_CODES, schema.SOIL_TYPES, strict=True), start=1
                    )
                ),
            ),
            "## Cover types",
            "",
            "`Cover_Type` is UCI's class 1–7 minus one:",
            "",
            table(
                ("Cover_Type", "UCI class", "Name"),
                ((i, i + 1, n) for i, n in enumerate(schema.COVER_TYPE_NAMES)),
            ),
            "## What a value is read as",
            "",
            "Each line is `covertype.schema.check_value` run on the value while the docs were "
            "built:",
            "",
            table(("Field", "Sent", "Read as, or refused with"), _checked(examples)),
        ]
    )


def _checked(examples: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    from covertype import schema

    rows = []
    for field, value in examples:
        try:
            result = f"`{schema.check_value(field, value)!r}`"
        except schema.FieldError as error:
            result = str(error)
        rows.append((f"`{field}`", f"`{value!r}`", result))
    return rows


# ---------------------------------------------------------------- root files


def root_file_page(name: str) -> str:
    """A Markdown file of the repository's root, its links into docs/ made site-relative."""
    text = (REPO / name).read_text()
    for root, page in ROOT_PAGES.items():
        text = text.replace(f"]({root})", f"]({page})")
    return re.sub(r"\]\(docs/", "](", text)


# The repository's root files as the site has them.
ROOT_PAGES = {
    "README.md": "index.md",
    "CHANGELOG.md": "changelog.md",
    "CONTRIBUTING.md": "contributing.md",
}

# Pages whose text is generated: docs/ holds a stub of each (so links to them work in a
# clone too), replaced by the generated text at every build.
REFERENCE: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page,
    "reference/settings.md": settings_page,
    "reference/inference-api.md": inference_api_page,
    "reference/source-api.md": source_api_page,
    "reference/record.md": record_page,
}
# Pages made from the repository's root files, which docs/ does not hold at all.
GENERATED: dict[str, Callable[[], str]] = {
    "changelog.md": lambda: root_file_page("CHANGELOG.md"),
    "contributing.md": lambda: root_file_page("CONTRIBUTING.md"),
}


# ---------------------------------------------------------------- MkDocs events


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    # `mkdocs serve` rebuilds when the code the pages come from changes.
    for path in ("src/covertype", "CHANGELOG.md", "CONTRIBUTING.md"):
        if str(REPO / path) not in config.watch:
            config.watch.append(str(REPO / path))
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, make in GENERATED.items():
        files.append(File.generated(config, uri, content=make()))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    make = REFERENCE.get(page.file.src_uri)
    return make() if make else markdown
