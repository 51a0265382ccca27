"""Structured logs: one JSON object per line on stderr, for the services and the CLI."""

from __future__ import annotations

import logging
import logging.config

JSON_FORMATTER = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
    "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
}


def logging_config(level: str = "INFO") -> dict:
    """A dictConfig for our loggers and uvicorn's, all as JSON lines."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": JSON_FORMATTER},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"level": level},
            "uvicorn.access": {"level": level},
            "httpx": {"level": "WARNING"},
        },
    }


def setup(level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(level))
