"""Every URL, port, path and secret of the platform, read from the environment and `.env`,
grouped by the component that uses it (`settings.serve.port`, `settings.mlflow.model_name`):
one module per group, the loading in `environment`, value helpers in `values`."""

from covertype.settings.environment import (
    MissingSecret,
    Settings,
    SettingsError,
    Variable,
    env_name,
    get_settings,
    require,
    variables,
)
from covertype.settings.values import (
    MIN_KEY,
    MIN_PASSWORD,
    check_secret,
    client_host,
    safe_url,
    write_secret,
)

__all__ = [
    "MIN_KEY", "MIN_PASSWORD", "MissingSecret", "Settings", "SettingsError", "Variable",
    "check_secret", "client_host", "env_name", "get_settings", "require", "safe_url",
    "variables", "write_secret",
]  # fmt: skip
