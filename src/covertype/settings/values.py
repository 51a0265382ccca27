"""What every group of settings is made of, and the helpers that handle their values:
secrets (checked, written 0600), addresses and database URLs as a client and a log see them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

MIN_PASSWORD = 12  # MLflow's own minimum; the other logins ask for as much
MIN_KEY = 16


class Group(BaseModel):
    """The settings of one component; each field read from its own environment variable
    (its `validation_alias`), or given by name in code and tests."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    # COVERTYPE_HOME, given by the root Settings: where a location left unset defaults to.
    _home: Path = PrivateAttr(default_factory=lambda: Path(".covertype").resolve())


def setting(default: Any, env: str, description: str, **constraints: Any) -> Any:
    """A field of a group: its default, the variable that sets it, what it means."""
    return Field(default, validation_alias=env, description=description, **constraints)


def check_secret(text: str, minimum: int, what: str) -> None:
    """ValueError saying what is wrong with a password or key (never the secret itself).
    A key goes in a header and in a comma-separated list: no spaces, no commas."""
    if not text:
        raise ValueError(f"{what} is empty; it needs at least {minimum} characters")
    if len(text) < minimum:
        raise ValueError(f"{what} is too short ({len(text)} characters): at least {minimum}")
    if "key" in what and any(c.isspace() or c == "," for c in text):
        raise ValueError(f"{what} may not contain spaces or commas")


def write_secret(path: Path, text: str) -> None:
    """`text` in `path`, readable by this user only from its first byte (no window at 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    temporary.replace(path)


def client_host(host: str) -> str:
    """Where a client reaches a server that listens on `host` (0.0.0.0 is no address)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def safe_url(url: str) -> str:
    """A database URL with its password hidden, for logs, tags and messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
