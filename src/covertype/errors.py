"""The base of every error the platform raises on purpose.

A `CovertypeError`'s message says what is wrong and what to do about it, in one line: the
inference and source APIs answer it with its `status` (one exception handler per app turns
it into `{"detail": message}`), a `covertype` command prints it and exits with `exit_code`.
Each stage subclasses it where the error is raised; nothing translates errors one by one.
"""

from __future__ import annotations

from collections.abc import Mapping


class CovertypeError(Exception):
    """An error a user can act on; subclasses set the HTTP status and the exit code."""

    status: int = 500
    exit_code: int = 1

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})  # e.g. Retry-After of a 503

    def body(self) -> dict:
        """The JSON an API answers with: FastAPI's shape, `{"detail": ...}`."""
        return {"detail": self.message}


class BadInput(CovertypeError):
    """Input that breaks a rule of the record or of a request (HTTP 422)."""

    status = 422
    exit_code = 2


class NotFound(CovertypeError):
    """A thing named that does not exist (HTTP 404)."""

    status = 404


class Unavailable(CovertypeError):
    """A service or a model this needs does not answer or is not there yet (HTTP 503)."""

    status = 503


class ConfigurationError(CovertypeError):
    """Settings that cannot work; the message names the variable (exit 2)."""

    status = 500
    exit_code = 2
