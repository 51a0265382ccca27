"""`Settings`: every group of settings behind one object, each field read from its own
environment variable (then `.env`), exactly the names the platform has always used.

A variable sets the field whose `validation_alias` it is (`COVERTYPE_SERVE_PORT` →
`settings.serve.port`), case-insensitively, the environment before `.env`. Locations left
unset are resolved in COVERTYPE_HOME once, here, so no reader computes a default of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from covertype.errors import ConfigurationError
from covertype.settings.airflow import AirflowSettings
from covertype.settings.auth import AuthSettings
from covertype.settings.ingest import IngestSettings
from covertype.settings.loadtest import LoadtestSettings
from covertype.settings.mlflow import MlflowSettings
from covertype.settings.monitor import MonitorSettings
from covertype.settings.prometheus import PrometheusSettings
from covertype.settings.release import ReleaseSettings
from covertype.settings.serve import ServeSettings
from covertype.settings.source import SourceSettings
from covertype.settings.train import TrainSettings
from covertype.settings.ui import UiSettings
from covertype.settings.values import Group, setting

# Set while Settings are built from given values only (model_validate alone still reads the
# environment in pydantic-settings 2.16: its sources run in a validator).
_GIVEN_ONLY: ContextVar[bool] = ContextVar("covertype_settings_given_only", default=False)


class Settings(BaseSettings):
    """The platform's settings. `Settings()` reads the environment and `.env`;
    `Settings.from_env({...})` reads only the variables given (tests, tools)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    home: Path = setting(
        Path(".covertype"),
        "COVERTYPE_HOME",
        "folder of the local state: SQLite files, the dataset cache, logs (made absolute)",
    )
    data_db_url: str | None = setting(
        None,
        "COVERTYPE_DATA_DB_URL",
        "SQLAlchemy URL of the data DB; unset: SQLite in COVERTYPE_HOME (MySQL in compose)",
    )
    source: SourceSettings = Field(default_factory=SourceSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    loadtest: LoadtestSettings = Field(default_factory=LoadtestSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    release: ReleaseSettings = Field(default_factory=ReleaseSettings)
    airflow: AirflowSettings = Field(default_factory=AirflowSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _GIVEN_ONLY.get():  # from_env, with_env: the values given, nothing else
            return (init_settings,)
        return (
            init_settings,
            _Variables(settings_cls, env_settings),
            _Variables(settings_cls, dotenv_settings),
        )

    @classmethod
    def from_env(cls, variables: Mapping[str, object]) -> Settings:
        """Settings from these variables alone (not the process's environment, not .env)."""
        lowered = {name.lower(): value for name, value in variables.items()}
        return cls._given(_grouped(cls, lowered))

    @classmethod
    def _given(cls, values: dict[str, Any]) -> Settings:
        token = _GIVEN_ONLY.set(True)
        try:
            with _named_errors():
                return cls(**values)
        finally:
            _GIVEN_ONLY.reset(token)

    def with_env(self, variables: Mapping[str, object]) -> Settings:
        """A copy with these variables set (named as in the environment), validated again."""
        values = self.model_dump()
        paths = {v.env.lower(): v.path for v in _variables(type(self))}
        for name, value in variables.items():
            group, _, field = paths[name.lower()].rpartition(".")
            (values[group] if group else values)[field] = value
        return type(self)._given(values)

    @model_validator(mode="after")
    def _one_home(self) -> Settings:
        # Every process (API, CLI, Airflow task) must agree on one folder, whatever its cwd;
        # the groups default their locations in it.
        self.home = self.home.expanduser().resolve()
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Group):
                value._home = self.home
        return self

    @property
    def data_db(self) -> str:
        """The data DB's URL: COVERTYPE_DATA_DB_URL, else SQLite in home."""
        return self.data_db_url or f"sqlite:///{self.home / 'cover_type.db'}"

    @property
    def cache_dir(self) -> Path:
        """The converted dataset's cache."""
        return self.home / "cache"


class _Variables(PydanticBaseSettingsSource):
    """The variables another source read (the environment, `.env`), put in their groups."""

    def __init__(self, settings_cls: type[BaseSettings], source: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.variables: Mapping[str, object] = getattr(source, "env_vars", {})

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        return _grouped(self.settings_cls, self.variables)


def _grouped(model: type[BaseModel], variables: Mapping[str, object]) -> dict[str, Any]:
    """{field alias or group: value} of the fields whose variable is set (keys lowercase)."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        group = _group_of(info)
        if group is not None:
            if found := _grouped(group, variables):
                values[name] = found
        elif isinstance(info.validation_alias, str):
            value = variables.get(info.validation_alias.lower())
            if value is not None:
                values[info.validation_alias] = value
    return values


def _group_of(info: FieldInfo) -> type[Group] | None:
    kind = info.annotation
    return kind if isinstance(kind, type) and issubclass(kind, Group) else None


class Variable(NamedTuple):
    """One setting as its environment variable documents it."""

    env: str
    path: str  # where code reads it: `serve.port`
    annotation: Any
    default: Any
    description: str


def variables(model: type[BaseModel] = Settings) -> Iterator[Variable]:
    """Every setting, in the order of the groups and their fields."""
    return _variables(model)


def _variables(model: type[BaseModel], prefix: str = "") -> Iterator[Variable]:
    for name, info in model.model_fields.items():
        group = _group_of(info)
        if group is not None:
            yield from _variables(group, f"{prefix}{name}.")
        else:
            env = str(info.validation_alias)
            yield Variable(
                env, prefix + name, info.annotation, info.default, info.description or ""
            )


def env_name(path: str) -> str:
    """The environment variable of a setting given by its path (`serve.port`)."""
    for variable in variables():
        if variable.path == path:
            return variable.env
    raise KeyError(f"no setting {path!r}")


class SettingsError(ConfigurationError):
    """Settings that do not validate, each named by its environment variable."""


class MissingSecret(ConfigurationError):
    """A login is on and the secret it needs is not set; the message names the variable."""


def require(settings: Settings, path: str, what: str) -> str:
    """The secret at `path` (`auth.ui_password`), or MissingSecret saying `what` needs it."""
    group, name = path.split(".")
    value = getattr(getattr(settings, group), name)
    if value is None:
        raise MissingSecret(
            f"{env_name(path)} is not set: with COVERTYPE_AUTH=on {what} "
            "(COVERTYPE_AUTH=off turns the logins off, on 127.0.0.1 only)"
        )
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _problem(error: Any) -> str:
    """One validation error as VARIABLE=value: why (a secret's value is never shown)."""
    by_alias = {str(v.env).lower(): v for v in variables()}
    by_path = {v.path: v for v in variables()}
    loc = [str(part) for part in error["loc"]]
    found = by_alias.get(loc[-1].lower()) or by_path.get(".".join(loc))
    env = found.env if found else ".".join(loc)
    secret = found is not None and "SecretStr" in str(found.annotation)
    shown = "<hidden>" if secret else repr(error.get("input"))
    why = error["msg"].removeprefix("Value error, ")
    if found and str(error.get("type", "")).endswith("_parsing"):  # not even the type: say
        why += f" ({found.description})"  # what the setting is, its unit and special values
    return f"{env}={shown}: {why}"


@contextmanager
def _named_errors() -> Iterator[None]:
    """A ValidationError as a SettingsError naming each variable and what is wrong."""
    try:
        yield
    except ValidationError as error:
        problems = [_problem(e) for e in error.errors()]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


@lru_cache
def get_settings() -> Settings:
    with _named_errors():
        return Settings()
